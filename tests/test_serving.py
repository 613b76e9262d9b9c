"""The HTTP app: predictions equal ``MultiTaskModel.predict``, every client error is a 4xx
naming the record and feature (never a 500, also for generated payloads), and a real
``polytask serve`` process answers on loopback."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import polytask
from polytask import MultiTaskModel
from polytask.serving.app import create_app
from polytask.serving.payload import json_records
from tests.conftest import assert_user_error, call_cli, make_table

TASKS = ["y_reg:regression", "y_bin:binary", "y_cls:multiclass"]
LABELS = ["id", "y_reg", "y_bin", "y_cls"]
FEATURES = ["x0", "x1", "x2", "x3", "cat", "flag"]
MAX_ROWS = 300
MAX_BODY = 400_000
#: generated payloads in the property test (raise it for a longer hunt, e.g. 5000)
EXAMPLES = int(os.environ.get("POLYTASK_SERVING_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[MultiTaskModel, Path, pd.DataFrame]:
    df = make_table(300, seed=3)
    run = tmp_path_factory.mktemp("serving") / "run"
    model = polytask.fit(df, TASKS, drop=["id"], epochs=2, hidden=[16], seed=0, out=run)
    return model, run, df.drop(columns=LABELS)


@pytest.fixture(scope="module")
def model(trained: tuple[MultiTaskModel, Path, pd.DataFrame]) -> MultiTaskModel:
    return trained[0]


@pytest.fixture(scope="module")
def features(trained: tuple[MultiTaskModel, Path, pd.DataFrame]) -> pd.DataFrame:
    return trained[2]


@pytest.fixture(scope="module")
def client(model: MultiTaskModel) -> Iterator[TestClient]:
    with TestClient(create_app(model, max_rows=MAX_ROWS, max_body_bytes=MAX_BODY)) as c:
        yield c


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready records (NaN and None as null; floats exact, which
    ``DataFrame.to_json`` is not: it keeps 10 digits)."""
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in frame.to_dict(orient="records")
    ]


def post(client: TestClient, body: Any) -> httpx.Response:
    """POST a body as JSON text; NaN and infinity go as the NaN/Infinity literals."""
    text = body if isinstance(body, (str, bytes)) else json.dumps(body, allow_nan=True)
    return client.post("/predict", content=text, headers={"content-type": "application/json"})


# -- correct answers ----------------------------------------------------------------------------


def test_a_256_row_batch_is_answered_as_predict_answers_it(
    client: TestClient, model: MultiTaskModel, features: pd.DataFrame
) -> None:
    rows = features.iloc[:256].copy()
    rows.loc[rows.index[:10], "cat"] = "never-seen"  # unseen categories
    rows.loc[rows.index[10:20], ["x0", "flag"]] = None  # missing values
    records = records_of(rows)
    assert sum(r["x2"] is None for r in records) > 0  # gaps from the data itself too
    response = post(client, {"records": records})
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    want = model.predict(rows)
    assert len(got) == 256
    assert list(got[0]) == list(want.columns)
    assert got == json_records(want)  # exact: JSON carries floats without loss
    # and checked column by column against the DataFrame itself
    for col in want.columns:
        values = [g[col] for g in got]
        if want[col].dtype.kind == "f":
            np.testing.assert_array_equal(np.array(values, dtype=float), want[col].to_numpy())
        else:
            assert values == want[col].tolist()
    assert {g["y_bin"] for g in got} <= {"yes", "no"}


def test_responses_carry_the_intervals_and_calibrated_probabilities(
    client: TestClient, model: MultiTaskModel, features: pd.DataFrame
) -> None:
    """TASK_lower/TASK_upper of a regression task and the temperature-scaled binary
    probability, as the Python API predicts them (issue 15, points 3-4)."""
    rows = features.iloc[:20]
    got = post(client, {"records": records_of(rows)}).json()["predictions"]
    want = model.predict(rows)
    lower = np.array([g["y_reg_lower"] for g in got])
    upper = np.array([g["y_reg_upper"] for g in got])
    np.testing.assert_array_equal(lower, want["y_reg_lower"].to_numpy())
    np.testing.assert_array_equal(upper, want["y_reg_upper"].to_numpy())
    assert (lower < want["y_reg"].to_numpy()).all() and (upper > want["y_reg"].to_numpy()).all()
    t = model.tasks[1].temperature.value
    assert t is not None
    z = model.predict_raw(rows)[1][:, 0].astype(np.float64)
    np.testing.assert_allclose([g["y_bin_proba"] for g in got], 1 / (1 + np.exp(-z / t)))
    meta = client.get("/metadata").json()
    assert meta["tasks"][0]["outputs"] == ["y_reg", "y_reg_lower", "y_reg_upper"]
    doc = client.get("/openapi.json").json()["components"]["schemas"]["Prediction"]
    assert "90% split-conformal" in doc["properties"]["y_reg_lower"]["description"]


def test_values_are_converted_as_predict_converts_table_cells(
    client: TestClient, features: pd.DataFrame
) -> None:
    base = records_of(features.iloc[[0]])[0]
    same_as_base = [
        {**base, "x0": str(base["x0"])},  # numeric text
        {**base, "x0": f"  {base['x0']}  "},
        {**base, "flag": base["flag"].upper()},  # boolean words in any case
    ]
    missing = [{**base, "x1": v} for v in (None, math.nan, math.inf, "", "   ")]
    unseen = [{**base, "cat": v} for v in ("zzz", "qqq", 17, True, "x" * 10_000)]
    flags = [{**base, "flag": v} for v in (True, "true", "Y", 1, "1", 1.0)]
    response = post(client, {"records": [base, *same_as_base, *missing, *unseen, *flags]})
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    assert all(p == got[0] for p in got[: 1 + len(same_as_base)])
    k = 1 + len(same_as_base)
    assert all(p == got[k] for p in got[k : k + len(missing)])
    assert got[k] != got[0]
    k += len(missing)
    assert all(p == got[k] for p in got[k : k + len(unseen)])
    k += len(unseen)
    assert all(p == got[k] for p in got[k:])


def test_health_and_metadata(client: TestClient, model: MultiTaskModel) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert meta["polytask_version"] == polytask.__version__
    assert meta["limits"] == {"max_rows": MAX_ROWS, "max_body_bytes": MAX_BODY}
    tasks = {t["name"]: t for t in meta["tasks"]}
    assert list(tasks) == ["y_reg", "y_bin", "y_cls"]
    assert [t["kind"] for t in meta["tasks"]] == ["regression", "binary", "multiclass"]
    assert tasks["y_bin"]["classes"] == ["no", "yes"] and tasks["y_bin"]["positive"] == "yes"
    assert tasks["y_bin"]["threshold"] == 0.5
    assert tasks["y_cls"]["classes"] == ["high", "low", "mid"]
    assert "y_reg" in tasks["y_reg"]["units"]
    outputs = [c for t in meta["tasks"] for c in t["outputs"]]
    assert outputs == list(model.predict(make_table(5, seed=9)).columns)
    types = {f["name"]: f["type"] for f in meta["features"]}
    assert types == {
        "x0": "numeric",
        "x1": "numeric",
        "x2": "numeric",
        "x3": "numeric",
        "flag": "boolean",
        "cat": "categorical",
    }
    cat = next(f for f in meta["features"] if f["name"] == "cat")
    assert cat["categories"] == ["a", "b", "c"]


def test_openapi_documents_request_response_and_errors(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert set(schemas["Record"]["properties"]) == set(FEATURES)
    assert set(schemas["Record"]["required"]) == set(FEATURES)
    assert "categorical feature" in schemas["Record"]["properties"]["cat"]["description"]
    assert list(schemas["Prediction"]["properties"])[:6] == [
        "y_reg",
        "y_reg_lower",
        "y_reg_upper",
        "y_bin",
        "y_bin_proba",
        "y_cls",
    ]
    assert schemas["PredictRequest"]["properties"]["records"]["minItems"] == 1
    responses = doc["paths"]["/predict"]["post"]["responses"]
    assert {"200", "413", "422"} <= set(responses)
    assert {"/health", "/metadata", "/predict"} <= set(doc["paths"])


# -- client errors ------------------------------------------------------------------------------


def _detail(response: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail and all({"loc", "msg", "type"} <= set(d) for d in detail)
    return detail


def test_a_missing_feature_names_the_record_and_feature(
    client: TestClient, features: pd.DataFrame
) -> None:
    records = records_of(features.iloc[:3])
    del records[1]["x1"]
    (d,) = _detail(post(client, {"records": records}), 422)
    assert d["loc"] == ["body", "records", 1, "x1"]
    assert d["type"] == "missing_feature" and "null for a missing value" in d["msg"]


@pytest.mark.parametrize(
    ("feature", "value", "kind"),
    [
        ("x0", "abc", "numeric_value"),
        ("x3", "1,5", "numeric_value"),
        ("flag", "maybe", "boolean_value"),
        ("flag", 2, "boolean_value"),
        ("x0", 1e300, "number_too_large"),
        ("x0", 10**400, "number_too_large"),
        ("cat", [1, 2], "scalar_type"),
        ("x2", {"a": 1}, "scalar_type"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_record_and_feature(
    client: TestClient, features: pd.DataFrame, feature: str, value: Any, kind: str
) -> None:
    records = records_of(features.iloc[:40])
    records[29][feature] = value  # not the first: the record must be located
    (d,) = _detail(post(client, {"records": records}), 422)
    assert d["loc"] == ["body", "records", 29, feature], d
    assert d["type"] == kind
    assert feature in d["msg"] or kind == "scalar_type"


def test_batch_and_body_limits(client: TestClient, features: pd.DataFrame) -> None:
    one = records_of(features.iloc[[0]])[0]
    (d,) = _detail(post(client, {"records": [one] * (MAX_ROWS + 1)}), 422)
    assert d["loc"] == ["body", "records"] and d["type"] == "too_many_records"
    assert str(MAX_ROWS) in d["msg"]
    assert post(client, {"records": [one] * MAX_ROWS}).status_code == 200

    big = json.dumps({"records": [{**one, "cat": "x" * (MAX_BODY + 1)}]}).encode()
    (d,) = _detail(post(client, big), 413)
    assert d["loc"] == ["body"] and str(MAX_BODY) in d["msg"]
    assert d["type"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for i in range(0, len(big), 50_000):
            yield big[i : i + 50_000]

    streamed = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    (d,) = _detail(streamed, 413)
    assert str(MAX_BODY) in d["msg"] and d["type"] == "body_too_large"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"records": []}, ["body", "records"]),
        ({"records": [1, "a"]}, ["body", "records", 0]),
        ({"records": "all"}, ["body", "records"]),
        ({"rows": []}, ["body", "records"]),
        ([{"x0": 1}], ["body"]),
        ("{not json", ["body", 1]),
        ("", ["body"]),
        (b'{"records": [{"cat": "\xff"}]}', ["body"]),  # not UTF-8
        ("[" * 100_000, ["body"]),  # nested deeper than the JSON parser goes
    ],
)
def test_malformed_bodies_are_422(client: TestClient, body: Any, loc: list[Any]) -> None:
    detail = _detail(post(client, body), 422)
    assert detail[0]["loc"] == loc


def test_many_errors_are_listed_briefly(client: TestClient) -> None:
    detail = _detail(post(client, {"records": [{}] * 50}), 422)
    assert len(detail) == 21 and detail[-1]["type"] == "more_errors"


# -- generated payloads --------------------------------------------------------------------------

# anything JSON can hold: every type, NaN/inf, huge integers, unicode, long strings
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=500, max_size=2000),
    st.sampled_from(["", " ", "1", "1.5", "-0", "1e5", "1e400", "inf", "nan", "yes", "NO", "a"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(), SCALARS))
# values each feature takes (missing ones, numeric text, unseen categories included)
NUMBERS = st.one_of(
    st.none(),
    st.floats(min_value=-1e30, max_value=1e30),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324]),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from(["", " ", "1.5", " -2 ", "1e5", "+3", ".5", "inf", "-Infinity", "1e400"]),
)
FLAGS = st.sampled_from([True, False, None, "yes", "NO", "t", "F", "1", "0", 1, 0, 1.0, "", " "])
CATEGORIES = st.one_of(
    st.none(),
    st.sampled_from(["a", "b", "c", " a ", ""]),
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=500, max_size=2000),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
GOOD_RECORDS = st.fixed_dictionaries(
    {"x0": NUMBERS, "x1": NUMBERS, "x2": NUMBERS, "x3": NUMBERS, "flag": FLAGS, "cat": CATEGORIES},
    optional={"extra key": VALUES, "\u00e9\U0001f600": VALUES},
)


@st.composite
def damaged(draw: st.DrawFn) -> dict[str, Any]:
    """A good record with one feature deleted or holding any value at all."""
    record = draw(GOOD_RECORDS)
    feature = draw(st.sampled_from(FEATURES))
    if draw(st.booleans()):
        del record[feature]
    else:
        record[feature] = draw(VALUES)
    return record


RECORDS = st.one_of(GOOD_RECORDS, GOOD_RECORDS, GOOD_RECORDS, damaged(), VALUES)
PAYLOADS = st.one_of(
    st.fixed_dictionaries({"records": st.lists(GOOD_RECORDS, min_size=1, max_size=8)}),
    st.fixed_dictionaries({"records": st.lists(RECORDS, max_size=8)}),
    st.dictionaries(st.text(max_size=10), VALUES, max_size=3),
    VALUES,
)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(payload=PAYLOADS)
def test_generated_payloads_get_a_correct_answer_or_a_4xx(
    client: TestClient, model: MultiTaskModel, payload: Any
) -> None:
    # a 500 would raise here (the test client re-raises server errors)
    response = post(client, json.dumps(payload, allow_nan=True))
    event(f"status {response.status_code}")
    assert response.status_code in (200, 413, 422), response.text
    body = response.json()
    if response.status_code == 422:
        assert all(d["loc"][0] == "body" and d["msg"] for d in body["detail"])
        return
    records = payload["records"]
    frame = pd.DataFrame.from_records(
        [{f: r[f] for f in FEATURES} for r in records], columns=FEATURES
    )
    assert body["predictions"] == json_records(model.predict(frame))


# -- a real server -------------------------------------------------------------------------------


def _start(run: Path, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    src = str(Path(polytask.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "polytask", "serve", str(run), "--port", "0", *extra],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "serving " in text and " on http://" in text:
            url = text.split(" on ", 1)[1].split()[0]
            return proc, url
        if proc.poll() is not None:
            raise AssertionError(f"polytask serve exited: {text}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"polytask serve did not start: {log.read_text()}")


def test_a_real_server_process_on_loopback(
    trained: tuple[MultiTaskModel, Path, pd.DataFrame], tmp_path: Path
) -> None:
    model, run, features = trained
    proc, url = _start(run, tmp_path / "serve.log", "--max-rows", "64")
    try:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=10) as http:
            for _ in range(100):  # the socket is bound before uvicorn starts answering
                try:
                    if http.get("/health").json() == {"status": "ok"}:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            rows = features.iloc[:64]
            response = http.post("/predict", json={"records": records_of(rows)})
            assert response.status_code == 200
            assert response.json()["predictions"] == json_records(model.predict(rows))
            too_many = http.post("/predict", json={"records": records_of(features.iloc[:65])})
            assert too_many.status_code == 422
            assert http.get("/metadata").json()["limits"]["max_rows"] == 64
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a graceful shutdown, exit status 0
        rc = proc.wait(timeout=30)
    log = (tmp_path / "serve.log").read_text()
    assert rc == 0, log
    assert "Traceback" not in log and "Finished server process" in log


# -- command-line errors -------------------------------------------------------------------------


def test_serve_errors_are_one_line(
    trained: tuple[MultiTaskModel, Path, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = trained[1]
    assert_user_error(call_cli(["serve", tmp_path / "nope"]), "does not exist")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert_user_error(call_cli(["serve", run, "--port", port]), "choose another --port")
    assert_user_error(call_cli(["serve", run, "--port", 70000]), "not a port number")
    assert_user_error(call_cli(["serve", run, "--threads", 0]), "--threads")
    assert_user_error(call_cli(["serve", run, "--max-rows", 0]), "--max-rows")

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "polytask.serving.app")
    line = assert_user_error(call_cli(["serve", run]), "pip install 'polytask[serve]'")
    assert "fastapi" in line
