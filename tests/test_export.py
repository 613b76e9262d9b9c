"""ONNX export: onnxruntime agrees with PyTorch on the same rows, the JSON spec beside the
graph rebuilds the inputs and decodes the outputs exactly as ``predict`` does, and the
command line fails in one line without touching existing files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch

import polytask
from polytask import MultiTaskModel
from polytask.serving.onnx_decode import OnnxPredictor, decode, encode, load_spec
from polytask.serving.onnx_export import export_onnx, output_names, spec_path
from tests.conftest import assert_user_error, call_cli, make_table

TASKS = [
    "y_reg:regression:transform=log1p",
    "y_bin:binary",
    "y_cls:multiclass",
    "tags:multilabel",
    "visits:count",
]
LABELS = ["id", "y_reg", "y_bin", "y_cls", "tags", "visits"]


def parity(got: np.ndarray, want: np.ndarray) -> float:
    """max |a - b| / max(1, |b|): within 1e-5 is the issue's bar."""
    assert got.shape == want.shape and got.dtype == want.dtype
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))


def table(n: int, seed: int) -> pd.DataFrame:
    df = make_table(n, seed=seed)
    rng = np.random.default_rng(seed)
    df["y_reg"] = np.exp(df["y_reg"])  # positive and skewed: trained on a log scale
    df["tags"] = [
        "|".join(t for t in ("red", "green", "blue") if rng.random() < 0.4) or None
        for _ in range(n)
    ]
    df["visits"] = rng.poisson(np.exp(0.5 * df["x0"].to_numpy()))
    return df


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("export")
    df = table(300, seed=4)
    run = base / "run"
    model = polytask.fit(df, TASKS, drop=["id"], epochs=2, hidden=[16], seed=0, out=run)
    graph = base / "out" / "model.onnx"
    result = call_cli(["export", run, "--format", "onnx", "--output", graph])
    assert result.rc == 0, result.err
    rows = table(200, seed=5).drop(columns=LABELS)
    rows.loc[:9, "cat"] = "never-seen"
    rows.loc[10:19, ["x0", "flag", "cat"]] = None
    return {"model": model, "run": run, "graph": graph, "rows": rows, "cli": result}


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict(orient="records")


def test_one_graph_with_named_inputs_and_an_output_per_task(exported: dict[str, Any]) -> None:
    graph = exported["graph"]
    assert spec_path(graph) == graph.with_name("model.preprocessing.json")
    assert sorted(p.name for p in graph.parent.iterdir()) == [
        "model.onnx",
        "model.preprocessing.json",
    ]
    assert "onnxruntime matches PyTorch" in exported["cli"].err
    proto = onnx.load(str(graph))
    onnx.checker.check_model(proto)
    inputs = {i.name: i.type.tensor_type for i in proto.graph.input}
    assert list(inputs) == ["numeric", "categorical"]
    assert inputs["numeric"].elem_type == onnx.TensorProto.FLOAT
    assert inputs["categorical"].elem_type == onnx.TensorProto.INT64
    for t in inputs.values():  # a symbolic batch axis, fixed widths
        assert t.shape.dim[0].dim_param and not t.shape.dim[0].HasField("dim_value")
    assert inputs["numeric"].shape.dim[1].dim_value == 6  # 4 numeric + flag + x2's indicator
    assert inputs["categorical"].shape.dim[1].dim_value == 1
    assert [o.name for o in proto.graph.output] == ["y_reg", "y_bin", "y_cls", "tags", "visits"]
    spec = load_spec(spec_path(graph))
    assert spec["exporter"] == "dynamo"
    assert [o["output"] for o in spec["outputs"]] == [o.name for o in proto.graph.output]


def test_onnxruntime_matches_pytorch_on_the_same_rows(exported: dict[str, Any]) -> None:
    model: MultiTaskModel = exported["model"]
    rows = exported["rows"]
    feats = model.preprocessor.transform(rows)
    session = ort.InferenceSession(str(exported["graph"]), providers=["CPUExecutionProvider"])
    got = session.run(
        None, {"numeric": feats.numeric.numpy(), "categorical": feats.categorical.numpy()}
    )
    want = model.predict_raw(rows)
    worst = max(parity(g, w) for g, w in zip(got, want, strict=True))
    print(f"ONNX parity: max |onnx - torch| / max(1, |torch|) = {worst:.3g} over {len(rows)} rows")
    assert worst <= 1e-5
    # the batch axis is dynamic: one row, and many
    one = session.run(
        None, {"numeric": feats.numeric[:1].numpy(), "categorical": feats.categorical[:1].numpy()}
    )
    assert all(parity(o, w[:1]) <= 1e-5 for o, w in zip(one, want, strict=True))
    many = {
        "numeric": np.repeat(feats.numeric.numpy(), 10, 0),
        "categorical": np.repeat(feats.categorical.numpy(), 10, 0),
    }
    assert session.run(None, many)[2].shape == (2000, 3)


def test_the_json_spec_rebuilds_inputs_and_decodes_outputs_exactly(
    exported: dict[str, Any],
) -> None:
    model: MultiTaskModel = exported["model"]
    rows = exported["rows"]
    spec = load_spec(spec_path(exported["graph"]))
    inputs = encode(records(rows), spec)
    feats = model.preprocessor.transform(rows)
    np.testing.assert_array_equal(inputs["numeric"], feats.numeric.numpy())
    np.testing.assert_array_equal(inputs["categorical"], feats.categorical.numpy())
    raw = dict(zip([o["output"] for o in spec["outputs"]], model.predict_raw(rows), strict=True))
    decoded = decode(raw, spec)
    want = model.predict(rows)
    assert list(decoded) == list(want.columns)
    for col in want.columns:  # bit for bit on the same raw outputs
        np.testing.assert_array_equal(decoded[col], want[col].to_numpy(), err_msg=col)


def test_predictions_decoded_from_onnx_equal_predict(exported: dict[str, Any]) -> None:
    model: MultiTaskModel = exported["model"]
    rows = exported["rows"]
    got = OnnxPredictor(exported["graph"]).predict(records(rows))
    want = model.predict(rows)
    assert list(got) == list(want.columns)
    for col in want.columns:
        if got[col].dtype == object:  # labels: identical
            assert got[col].tolist() == want[col].tolist(), col
        else:  # numbers: within the parity bar
            assert parity(got[col], want[col].to_numpy()) <= 1e-5, col
    assert set(got["y_bin"]) == {"yes", "no"}


def test_reference_encoder_refuses_what_predict_refuses(exported: dict[str, Any]) -> None:
    spec = load_spec(spec_path(exported["graph"]))
    good = records(exported["rows"].iloc[[0]])[0]
    with pytest.raises(ValueError, match="record 0: numeric feature 'x0'"):
        encode([{**good, "x0": "1,5"}], spec)
    with pytest.raises(ValueError, match="boolean feature 'flag'"):
        encode([{**good, "flag": "maybe"}], spec)
    for huge in (10**400, 1e300):
        with pytest.raises(ValueError, match=r"x0.*too large"):
            encode([{**good, "x0": huge}], spec)
    with pytest.raises(ValueError, match="lacks feature 'cat'"):
        encode([{k: v for k, v in good.items() if k != "cat"}], spec)
    same = encode([good, {**good, "x0": f" {good['x0']} ", "flag": good["flag"].upper()}], spec)
    np.testing.assert_array_equal(same["numeric"][0], same["numeric"][1])


@pytest.mark.parametrize("features", [["x0", "x2"], ["cat"]], ids=["no-categorical", "no-numeric"])
def test_a_model_without_numeric_or_categorical_features(
    features: list[str], tmp_path: Path
) -> None:
    df = make_table(200, seed=6)
    model = polytask.fit(
        df, ["y_reg:regression", "y_bin:binary"], features=features, epochs=1, hidden=[8]
    )
    result = export_onnx(model, tmp_path / "m.onnx")
    names = [i.name for i in ort.InferenceSession(str(result.graph)).get_inputs()]
    assert names == (["numeric"] if features[0] == "x0" else ["categorical"])
    rows = make_table(50, seed=7)
    got = OnnxPredictor(result.graph).predict(records(rows[features]))
    want = model.predict(rows)
    assert got["y_bin"].tolist() == want["y_bin"].tolist()
    assert parity(got["y_reg"], want["y_reg"].to_numpy()) <= 1e-5


def test_falls_back_to_the_torchscript_exporter(
    exported: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = torch.onnx.export

    def no_dynamo(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("dynamo", True):
            raise RuntimeError("dynamo exporter unavailable")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    result = export_onnx(exported["model"], tmp_path / "m.onnx")
    assert result.exporter == "torchscript"
    assert result.max_error is not None and result.max_error <= 1e-5
    assert load_spec(result.spec)["exporter"] == "torchscript"


def test_output_names_are_sanitized_and_unique() -> None:
    tasks = [SimpleNamespace(name=n) for n in ("y bin", "y-bin", "numeric", "2nd", "é")]
    assert output_names(tasks) == ["y_bin", "y_bin_2", "numeric_2", "t_2nd", "_"]  # type: ignore[arg-type]


# -- command line ------------------------------------------------------------------------------


def test_export_errors_are_one_line_and_touch_nothing(
    exported: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, graph = exported["run"], exported["graph"]
    before = {p.name: p.read_bytes() for p in graph.parent.iterdir()}
    assert_user_error(call_cli(["export", run, "--output", graph]), "already exists", "--overwrite")
    only_spec = tmp_path / "x.onnx"
    spec_path(only_spec).write_text("mine")
    assert_user_error(call_cli(["export", run, "--output", only_spec]), "x.preprocessing.json")
    assert spec_path(only_spec).read_text() == "mine" and not only_spec.exists()
    assert_user_error(call_cli(["export", run, "--output", tmp_path / "m.pt"]), "must end in .onnx")
    assert_user_error(
        call_cli(["export", tmp_path / "nope", "--output", tmp_path / "a.onnx"]), "does not exist"
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(call_cli(["export", run, "--output", blocker / "m.onnx"]), "cannot write")
    assert {p.name: p.read_bytes() for p in graph.parent.iterdir()} == before

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if the extra were missing
    line = assert_user_error(
        call_cli(["export", run, "--output", tmp_path / "b.onnx"]), "pip install 'polytask[export]'"
    )
    assert "onnxscript" in line
    assert not (tmp_path / "b.onnx").exists()


def test_overwrite_replaces_both_files(exported: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_text("old")
    spec_path(target).write_text("old")
    result = call_cli(["export", exported["run"], "--output", target, "--overwrite"])
    assert result.rc == 0, result.err
    assert onnx.load(str(target)).graph.output[0].name == "y_reg"
    assert json.loads(spec_path(target).read_text())["graph"] == "m.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.preprocessing.json"]
