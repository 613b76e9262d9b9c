"""Numeric feature encodings (``model.numeric_encoding``) and cyclical columns
(``features.cyclical``): each learns the function it is for better than plain
standardisation, survives save/load/predict/serve/ONNX export, trains at both Jacobian
levels with a gradient balancer, and a bad option is one line naming it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from fastapi.testclient import TestClient

import polytask
from polytask import PolytaskError
from polytask.api import build_config
from polytask.architectures import ARCHITECTURES, ArchitectureSpec
from polytask.balancing.gramian import GramianEngine
from polytask.encoders import TabularEncoder
from polytask.encoders.numeric import NumericSpec, build_numeric_encoding
from polytask.features.cyclical import inferred_period
from polytask.features.stream.encode import ArrowEncoder
from polytask.network import build_tasks
from polytask.prepare_stream import prepare_stream
from polytask.serving.app import create_app
from polytask.serving.onnx_decode import OnnxPredictor
from polytask.serving.onnx_export import export_onnx
from polytask.serving.payload import json_records
from polytask.tasks import make_task
from tests.conftest import assert_user_error, call_cli

OPTIONS = "numeric_encoding_options"
FAST = {"hidden": [32], "dropout": 0.0, "batch_size": 128, "seed": 0}


def r2(model: polytask.MultiTaskModel, test: pd.DataFrame) -> float:
    return float(model.evaluate(test)["y"]["r2"])


def one_feature(n: int, target: Any, seed: int) -> pd.DataFrame:
    x = np.random.default_rng(seed).uniform(0.0, 1.0, n)
    return pd.DataFrame({"x": x, "y": target(x)})


def fit_r2(
    train: pd.DataFrame, test: pd.DataFrame, encoding: str, epochs: int = 10, **options: Any
) -> float:
    model = polytask.fit(
        train, ["y:regression"], numeric_encoding=encoding, epochs=epochs, **FAST, **options
    )
    return r2(model, test)


# -- each encoding learns what it is for ------------------------------------------------------


def test_periodic_embeddings_learn_a_periodic_target_better_than_standardisation() -> None:
    def wave(x: np.ndarray) -> np.ndarray:
        return np.sin(8 * np.pi * x)

    train, test = one_feature(2000, wave, seed=0), one_feature(500, wave, seed=1)
    standard = fit_r2(train, test, "standard", epochs=8)  # about 0.05
    periodic = fit_r2(train, test, "periodic", 8, numeric_encoding_options={"sigma": 1.0})
    assert periodic > 0.9, periodic  # about 0.99
    assert periodic > standard + 0.3, (periodic, standard)


def test_piecewise_encoding_learns_a_step_function_better_than_standardisation() -> None:
    def steps(x: np.ndarray) -> np.ndarray:
        return (np.floor(8 * x) % 2).astype(float)  # 8 steps, a square wave

    train, test = one_feature(2000, steps, seed=2), one_feature(500, steps, seed=3)
    standard = fit_r2(train, test, "standard")  # about 0.05
    piecewise = fit_r2(train, test, "piecewise", numeric_encoding_options={"bins": 16})
    assert piecewise > 0.75, piecewise  # about 0.86
    assert piecewise > standard + 0.3, (piecewise, standard)


def hours(n: int, seed: int, column: str = "dep_hour") -> pd.DataFrame:
    h = np.random.default_rng(seed).integers(0, 24, n)
    return pd.DataFrame({column: h, "y": np.cos(2 * np.pi * h / 24) + np.sin(2 * np.pi * h / 24)})


def test_an_hour_column_becomes_sin_and_cos_and_23_sits_next_to_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    train, test = hours(1000, seed=4), hours(300, seed=5)
    options = {**FAST, "batch_size": 32}
    model = polytask.fit(train, ["y:regression"], epochs=10, verbose=True, **options)
    (col,) = model.preprocessor.numeric
    assert (col.name, col.period, model.preprocessor.numeric_width) == ("dep_hour", 24, 2)
    z = model.preprocessor.transform(pd.DataFrame({"dep_hour": [23, 0, 12]})).numeric.numpy()
    assert np.linalg.norm(z[0] - z[1]) < 0.3 < 1.9 < np.linalg.norm(z[1] - z[2])
    np.testing.assert_allclose(z[1], [0.0, 1.0], atol=1e-7)  # sin 0, cos 0
    assert r2(model, test) > 0.98  # about 0.999 (the hour as a plain number: 0.94)
    # the user sees it: the type saved with the run, and a line in the start summary
    assert model.info["feature_types"] == {"dep_hour": "cyclical"}
    said = "cyclical as sin and cos: dep_hour (period 24, inferred from its name)"
    assert said in capsys.readouterr().err


def test_cyclical_inference_needs_both_the_name_and_the_range() -> None:
    rng = np.random.default_rng(0)
    assert inferred_period("month", pd.Series(rng.integers(1, 13, 50))) == 12
    assert inferred_period("pickup_minute_of_day", pd.Series(rng.uniform(0, 1440, 50))) == 1440
    assert inferred_period("dow", pd.Series(rng.integers(0, 7, 50))) == 7
    assert inferred_period("hour", pd.Series(rng.integers(0, 100, 50))) is None  # 0..99
    assert inferred_period("hours_worked", pd.Series(rng.integers(0, 20, 50))) is None
    assert inferred_period("age", pd.Series(rng.integers(0, 20, 50))) is None


def test_configured_period_and_plain_override() -> None:
    rng = np.random.default_rng(6)
    df = pd.DataFrame({"angle": rng.uniform(0, 360, 400), "hour": rng.integers(0, 24, 400)})
    df["y"] = np.sin(np.radians(df["angle"])) + df["hour"] / 24
    model = polytask.fit(
        df,
        ["y:regression"],
        epochs=2,
        config={"features": {"cyclical": {"angle": 360}, "numeric": ["hour"]}},
        **FAST,
    )
    periods = {c.name: c.period for c in model.preprocessor.numeric}
    assert periods == {"angle": 360.0, "hour": None}


# -- every encoding through save/load, serve and ONNX ------------------------------------------


def mixed(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x0": rng.normal(size=n),
            "x1": rng.exponential(size=n),
            "hour": rng.integers(0, 24, n),
            "flag": rng.random(n) < 0.3,
            "cat": rng.choice(["a", "b", "c"], n),
        }
    )
    df.loc[:20, "x1"] = np.nan
    df["y"] = df["x0"] + np.cos(2 * np.pi * df["hour"] / 24)
    df["b"] = np.where(df["x0"] > 0, "yes", "no")
    return df


@pytest.mark.parametrize("encoding", ["piecewise", "periodic"])
def test_save_load_predict_serve_and_onnx(encoding: str, tmp_path: Path) -> None:
    df = mixed(300, seed=7)
    rows = mixed(40, seed=8).drop(columns=["y", "b"])
    rows.loc[:5, ["x0", "hour"]] = np.nan
    options = {"width": 8, "bins": 8} if encoding == "piecewise" else {"width": 8}
    model = polytask.fit(
        df,
        ["y:regression", "b:binary"],
        epochs=2,
        numeric_encoding=encoding,
        numeric_encoding_options=options,
        out=tmp_path / "run",
        **FAST,
    )
    widths = model.net.encoder.feature_widths  # x0, x1 encoded; sin, cos, flag, ind. not
    assert widths == [8, 8, 1, 1, 1, 1, 4], widths
    want = model.predict(rows)
    loaded = polytask.load(tmp_path / "run")
    pd.testing.assert_frame_equal(loaded.predict(rows), want)
    with TestClient(create_app(loaded)) as client:
        records = [
            {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in rows.to_dict(orient="records")
        ]
        response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == json_records(want)
    export_onnx(tmp_path / "run", tmp_path / "m.onnx")  # checks onnxruntime against torch
    got = OnnxPredictor(tmp_path / "m.onnx").predict(rows.to_dict(orient="records"))
    np.testing.assert_allclose(got["y"], want["y"].to_numpy(), rtol=1e-5, atol=1e-5)
    assert got["b"].tolist() == want["b"].tolist()


def test_a_streamed_table_fits_the_same_periods_and_bins(tmp_path: Path) -> None:
    """The streamed fit (all training rows in its sample here) gives the in-memory
    preprocessing's periods and bin edges, and encodes rows to the same numbers."""
    df = mixed(400, seed=10)
    df.to_parquet(tmp_path / "part-0.parquet")
    cfg = build_config(
        tasks=["y:regression", "b:binary"], numeric_encoding="piecewise", progress=False
    )
    cfg.data.path, cfg.data.streaming = str(tmp_path), "true"
    prepared = prepare_stream(cfg, build_tasks(cfg))
    pre = prepared.preprocessors[0]
    assert [(c.name, c.period) for c in pre.numeric if c.period] == [("hour", 24.0)]
    x0 = next(c for c in pre.numeric if c.name == "x0")
    assert x0.edges is not None and len(x0.edges) == 17  # 16 bins
    assert [c.edges is None for c in pre.numeric] == [False, False, True, True]
    rows = df.iloc[:50]
    encoded = ArrowEncoder(pre).encode(pa.Table.from_pandas(rows, preserve_index=False))
    np.testing.assert_array_equal(encoded.numeric.numpy(), pre.transform(rows).numeric.numpy())


# -- balancers at both Jacobian levels ---------------------------------------------------------


@pytest.mark.parametrize("level", ["parameters", "representation"])
@pytest.mark.parametrize("encoding", ["piecewise", "periodic"])
def test_trains_with_pcgrad_at_both_jacobian_levels(encoding: str, level: str) -> None:
    df = mixed(300, seed=9)
    model = polytask.fit(
        df,
        ["y:regression", "b:binary"],
        epochs=4,
        numeric_encoding=encoding,
        balancing={"method": "pcgrad", "jacobian": level},
        **FAST,
    )
    first, last = model.history[0]["train"]["loss"], model.history[-1]["train"]["loss"]
    assert all(np.isfinite(v) for v in last.values())
    assert last["y"] < first["y"] and last["b"] < first["b"], (first, last)


@pytest.mark.parametrize("encoding", ["piecewise", "periodic"])
def test_gramian_engine_rules_cover_the_encodings(encoding: str) -> None:
    """The engine's Gramian equals autograd's J Jᵀ, every encoding parameter by a rule."""
    torch.manual_seed(0)
    edges = [[-1.0, -0.2, 0.3, 1.5], [-2.0, 0.0, 2.0]]
    spec = NumericSpec(3, [0, 2], edges)
    options = {"width": 4, "bins": 3} if encoding == "piecewise" else {"width": 4}
    enc = build_numeric_encoding(encoding, options, spec)
    encoder = TabularEncoder(3, [4], [2], [6], "relu", 0.0, "none", numeric_encoding=enc)
    tasks = []
    for name in ("r1", "r2", "r3"):
        t = make_task(name, "regression", [name], {"standardize": False, "transform": "none"})
        t.fitted = True
        tasks.append(t)
    net = ARCHITECTURES["hard"](ArchitectureSpec(encoder, tasks, [], "relu", 0.0)).double()
    num, cat = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 4, (16, 1))
    trunk = list(net.shared_parameters())
    engine = GramianEngine([net], trunk)
    with engine.recording():
        rep = net.representation(num, cat)
    outs = net.heads_forward(rep)
    targets = torch.randn(3, 16, dtype=torch.float64)
    losses = [t.loss(o, y, None) for t, o, y in zip(tasks, outs, targets, strict=True)]
    rep_grads = torch.stack([torch.autograd.grad(v, rep, retain_graph=True)[0] for v in losses])
    gram, left, _ = engine.gramian(rep, rep_grads)
    jac = torch.stack(
        [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(v, trunk, retain_graph=True)])
            for v in losses
        ]
    )
    torch.testing.assert_close(gram, jac @ jac.T)
    owned = {id(p) for p in enc.parameters()}  # type: ignore[union-attr]
    assert not [p for p in left if id(p) in owned]


@pytest.mark.parametrize("trunk", ["mlp", "resnet", "ft_transformer", "tabm"])
@pytest.mark.parametrize("encoding", ["piecewise", "periodic"])
def test_every_trunk_reads_the_encoded_widths(encoding: str, trunk: str) -> None:
    torch.manual_seed(0)
    spec = NumericSpec(4, [0, 2], [[-1.0, 0.0, 1.0], [-1.0, 1.0]])
    enc = build_numeric_encoding(encoding, {"width": 5}, spec)
    options = {"d_token": 8, "heads": 2, "n_blocks": 1} if trunk == "ft_transformer" else {}
    encoder = TabularEncoder(
        4, [4], [3], [8], trunk=trunk, trunk_options=options, numeric_encoding=enc
    )
    assert encoder.feature_widths == [5, 5, 1, 1, 3]
    num, cat = torch.randn(6, 4), torch.randint(0, 4, (6, 1))
    out = encoder(num, cat)
    assert out.shape == (6, encoder.out_features) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())  # type: ignore[union-attr]


# -- bad input: one line naming it -------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"model": {"numeric_encoding": "periodik"}}, "periodik"),
        (
            {"model": {"numeric_encoding": "piecewise", "numeric_encoding_options": {"bin": 8}}},
            "bin",
        ),
        (
            {"model": {"numeric_encoding": "periodic", "numeric_encoding_options": {"sigma": 0}}},
            "sigma",
        ),
        ({"features": {"cyclical": {"nope": 24}}}, "nope"),
        ({"features": {"cyclical": {"x": "fortnight"}}}, "fortnight"),
        ({"features": {"cyclical": {"x": -3}}}, "'x'"),
    ],
)
def test_bad_option_or_cyclical_column_is_one_line(config: dict[str, Any], needle: str) -> None:
    df = one_feature(60, lambda x: x, seed=0)
    with pytest.raises(PolytaskError) as err:
        polytask.fit(df, ["y:regression"], epochs=1, config=config, **FAST)
    message = str(err.value)
    assert "\n" not in message and needle in message, message


def test_the_command_line_names_a_bad_encoding(tmp_path: Path) -> None:
    one_feature(60, lambda x: x, seed=0).to_csv(tmp_path / "t.csv", index=False)
    args = [
        "train",
        "--data",
        tmp_path / "t.csv",
        "--task",
        "y:regression",
        "--out",
        tmp_path / "run",
    ]
    result = call_cli([*args, "--numeric-encoding", "piecewize", "--epochs", "1"])
    assert_user_error(result, "piecewize", "piecewise")
