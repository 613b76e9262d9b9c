"""The records path (a few rows encoded with numpy, no DataFrame) against the DataFrame
path, the new feature types' bad input, per-task sample weights, and serve's
micro-batcher."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pandas as pd
import pytest
import torch

import polytask
from polytask.errors import PolytaskError
from polytask.features.hashing import bucket_codes, stable_hash
from polytask.features.records import encode_columns, records_columns
from polytask.serving.batcher import BatchingOptions, MicroBatcher


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    df = pd.DataFrame(
        {
            "x": x,
            "count": rng.integers(0, 5, n),
            "flag": rng.random(n) < 0.5,
            "colour": rng.choice(["red", "green", "blue"], n),
            "user": rng.integers(0, 10**6, n),
            "tags": [list(rng.choice(["a", "b", "c", "d"], rng.integers(0, 4))) for _ in range(n)],
            "note": rng.choice(["good service here", "bad food there", "fine"], n),
        }
    )
    df["y"] = (x + df["colour"].eq("red") + df["tags"].map(len) * 0.3 > 0.5).astype(int)
    df["v"] = x * 2 + df["count"]
    return df


@pytest.fixture(scope="module")
def model() -> polytask.MultiTaskModel:
    df = _frame(600, 0)
    df.loc[::7, "x"] = np.nan  # numeric with gaps: a missing indicator
    df["flag"] = df["flag"].astype(object)
    df.loc[::5, "flag"] = None
    return polytask.fit(
        df,
        ["y:binary", "v:regression"],
        config={"features": {"hash_buckets": {"user": 500}, "text": ["note"]}},
        epochs=2,
        seed=0,
        progress=False,
    )


def _awkward_rows() -> pd.DataFrame:
    """Missing values and unseen categories in every column that accepts them."""
    df = _frame(12, 1).drop(columns=["y", "v"]).astype(object)
    df.loc[0, "x"] = None
    df.loc[1, "x"] = math.inf  # inf is missing
    df.loc[2, "flag"] = None
    df.loc[3, "colour"] = "purple"  # unseen
    df.loc[4, "colour"] = None
    df.loc[5, "colour"] = "  "  # empty text is missing
    df.loc[6, "tags"] = []
    df.loc[7, "tags"] = None
    df.loc[8, "tags"] = "a|zzz|b"  # text form, with an unseen item
    df.loc[9, "note"] = None
    df.loc[10, "count"] = "3"  # a number sent as text: the Series route
    df.loc[11, "user"] = "424242"  # an ID sent as text: the same bucket as 424242
    return df


def test_records_path_equals_the_dataframe_path(model) -> None:
    rows = _awkward_rows()
    pre = model.preprocessor
    assert {b.name for b in pre.bags} == {"tags"} and [t.name for t in pre.text] == ["note"]
    want = pre.transform(rows)
    records = rows.to_dict(orient="records")
    got = encode_columns(pre, records_columns(records, pre.columns))
    assert torch.equal(got.numeric, want.numeric)
    assert torch.equal(got.categorical, want.categorical)
    assert got.extra.keys() == want.extra.keys()
    for k in want.extra:  # bags may be padded to another width: compare the items
        a, b = got.extra[k], want.extra[k]
        w = max(a.shape[1], b.shape[1])
        pad = [torch.nn.functional.pad(t, (0, w - t.shape[1])) for t in (a, b)]
        assert torch.equal(pad[0], pad[1]), k
    # the answers: records, a few DataFrame rows, and all rows at once (DataFrame path)
    from polytask.model import FAST_ROWS

    many = pd.concat([rows] * (FAST_ROWS // len(rows) + 1), ignore_index=True)
    batch = model.predict(many).iloc[: len(rows)]
    few = model.predict(rows)
    one = model.predict_records(records)
    for col in batch.columns:
        if batch[col].dtype.kind == "f":
            np.testing.assert_allclose(few[col], batch[col], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose([r[col] for r in one], batch[col], rtol=1e-6, atol=1e-6)
        else:
            assert few[col].tolist() == batch[col].tolist() == [r[col] for r in one]


def test_stable_hash_is_fixed_and_canonical() -> None:
    # fixed values: a change here would move every trained model's buckets
    assert stable_hash(["a", "123"]).tolist() == [198367012849983736, 1736157961719511953]
    assert bucket_codes(["7"], 1000)[0] == bucket_codes(["7"], 1000)[0] >= 2
    codes = bucket_codes([str(i) for i in range(20_000)], 100)
    assert np.bincount(codes)[2:].min() > 120  # spread over every bucket


def test_bad_input_for_new_types_is_one_line(model) -> None:
    rows = _awkward_rows()
    nan_id = rows.copy()
    nan_id.loc[2, "user"] = None
    with pytest.raises(PolytaskError, match=r"'user' is hashed .* row 2 has no value"):
        model.predict(nan_id)
    with pytest.raises(PolytaskError, match=r"'user' is hashed .* row 2"):
        model.predict_records(nan_id.to_dict(orient="records"))
    nested = rows.copy()
    nested.at[3, "tags"] = [["a"], "b"]
    with pytest.raises(PolytaskError, match=r"multi-hot feature column 'tags' row 3 .*list"):
        model.predict(nested)
    df = _frame(50, 2)
    df.loc[4, "user"] = np.nan
    with pytest.raises(PolytaskError, match=r"feature column 'user' is hashed"):
        polytask.fit(df, ["y:binary"], hash_buckets={"user": 50}, epochs=1, progress=False)


def test_sample_weights_decide_what_the_loss_sees() -> None:
    """Half the rows carry flipped labels with weight 0: weighted, the model learns the
    clean rule; unweighted, the flipped rows cancel it."""
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.normal(size=n)
    noisy = rng.random(n) < 0.5
    y = np.where(noisy, x < 0, x > 0).astype(int)
    df = pd.DataFrame({"x": x, "z": rng.normal(size=n), "y": y, "w": np.where(noisy, 0.0, 1.0)})
    common = dict(epochs=20, seed=0, progress=False, features=["x", "z"], hidden=[16], lr=1e-2)
    # no validation split: model selection reads the unweighted validation loss
    common["config"] = {"data": {"validation_fraction": 0.0}}
    weighted = polytask.fit(df, ["y:binary:weight=w"], **common)
    plain = polytask.fit(df, ["y:binary"], **common)
    clean = pd.DataFrame({"x": [-2.0, -1.0, 1.0, 2.0], "z": 0.0})
    p = weighted.predict(clean)["y_proba"].to_numpy()
    assert (p[:2] < 0.3).all() and (p[2:] > 0.7).all()
    q = plain.predict(clean)["y_proba"].to_numpy()
    assert np.abs(q - 0.5).max() < np.abs(p - 0.5).min()
    bad = df.assign(w=df["w"].where(df.index != 9, -1.0))
    with pytest.raises(PolytaskError, match=r"weight column 'w' row 9 holds -1.0"):
        polytask.fit(bad, ["y:binary:weight=w"], **common)


def test_micro_batcher_groups_concurrent_requests_and_isolates_a_bad_one() -> None:
    calls: list[int] = []

    def run(records):
        calls.append(len(records))
        if any(r["v"] < 0 for r in records):
            raise PolytaskError("negative")
        return [{"double": 2 * r["v"]} for r in records]

    async def main():
        b = MicroBatcher(run, BatchingOptions(max_wait_ms=20, max_batch=8))
        alone = await b.submit([{"v": 1}])  # a lone request runs at once
        together = await asyncio.gather(
            *(b.submit([{"v": i}]) for i in range(12)), return_exceptions=True
        )
        mixed = await asyncio.gather(
            b.submit([{"v": 5}]), b.submit([{"v": -1}]), return_exceptions=True
        )
        b.close()
        return alone, together, mixed, b.batches

    alone, together, mixed, batches = asyncio.run(main())
    assert alone == [{"double": 2}]
    assert together == [[{"double": 2 * i}] for i in range(12)]
    assert max(calls[1:3]) == 8  # at most max_batch records per pass, 12 requests in 2
    assert mixed[0] == [{"double": 10}] and isinstance(mixed[1], PolytaskError)
    assert batches[:3] == [1, 8, 4]


def test_served_answers_equal_batch_predict_on_rec_features(model) -> None:
    from fastapi.testclient import TestClient

    from polytask.serving.app import create_app

    rows = _awkward_rows().drop(index=[10, 11])  # JSON sends numbers as numbers
    records = [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in rows.to_dict(orient="records")
    ]
    batch = model.predict(pd.concat([rows] * 8, ignore_index=True)).iloc[: len(rows)]
    with TestClient(create_app(model)) as client:
        got = client.post("/predict", json={"records": records}).json()["predictions"]
        meta = client.get("/metadata").json()
        bad = client.post("/predict", json={"records": [{**records[0], "tags": [{"a": 1}]}]})
    np.testing.assert_allclose([g["y_proba"] for g in got], batch["y_proba"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose([g["v"] for g in got], batch["v"], rtol=1e-6, atol=1e-6)
    assert {"name": "tags", "type": "multi_hot"}.items() <= next(
        f for f in meta["features"] if f["name"] == "tags"
    ).items()
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "tags"
