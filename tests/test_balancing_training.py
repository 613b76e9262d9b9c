"""Balancing in training: a task scaled by 100 starves the other under equal weighting;
the balancing methods rescue it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import polytask
import polytask.balancing

RAW = {"kind": "regression", "standardize": False, "transform": "none"}
# a narrow shared layer (3 units) that both tasks compete for
COMMON = dict(
    hidden=[64, 3],
    head_hidden=[32],
    dropout=0.0,
    norm="none",
    epochs=100,
    patience=None,
    lr=3e-3,
    weight_decay=0.0,
    batch_size=32,
    seed=0,
)


def competing(n: int, seed: int) -> pd.DataFrame:
    """a depends on x0..x3, b on x4..x7 and is 100 times larger."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    noise = 0.05 * rng.normal(size=(2, n))
    df["a"] = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] + noise[0]
    df["b"] = 100 * (np.cos(2 * x[:, 4]) + x[:, 5] * x[:, 6] - 0.5 * x[:, 7] + noise[1])
    return df


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return competing(3000, 0)


@pytest.fixture(scope="module")
def single_task_r2(data: pd.DataFrame) -> float:
    model = polytask.fit(data.drop(columns=["b"]), tasks={"a": RAW}, **COMMON)
    r2 = model.metrics["test"]["a"]["r2"]
    assert r2 > 0.9  # the architecture can learn a on its own
    return r2


def _multi(data: pd.DataFrame, method: str, **opts: object) -> polytask.MultiTaskModel:
    return polytask.fit(
        data, tasks={"a": RAW, "b": RAW}, balancing={"method": method, **opts}, **COMMON
    )


@pytest.mark.slow
def test_equal_weighting_starves_the_unscaled_task(data, single_task_r2) -> None:
    model = _multi(data, "ew")
    assert model.metrics["test"]["a"]["r2"] < 0.9 * single_task_r2
    assert model.metrics["test"]["b"]["r2"] > 0.8  # b took the shared layer


@pytest.mark.slow
@pytest.mark.parametrize("method", ["uw", "famo", "db_mtl", "imtl_g", "nash_mtl"])
def test_balancing_rescues_the_unscaled_task(data, single_task_r2, method: str) -> None:
    model = _multi(data, method)
    assert model.metrics["test"]["a"]["r2"] >= 0.9 * single_task_r2


def test_history_logs_weights_and_gradient_cosine() -> None:
    df = competing(400, 1)
    for method, opts in (("nash_mtl", {"jacobian": "representation"}), ("uw", {})):
        model = polytask.fit(
            df,
            tasks={"a": RAW, "b": RAW},
            balancing={"method": method, "log_every": 2, **opts},
            epochs=2,
            hidden=[16],
            seed=0,
        )
        for record in model.history:
            assert set(record["weights"]) == {"a", "b"}
            assert all(w > 0 for w in record["weights"].values())
            assert set(record["cosine"]) == {"a~b"}
            assert -1.0 <= record["cosine"]["a~b"] <= 1.0


def test_every_method_trains_at_both_levels_with_missing_labels() -> None:
    df = competing(300, 2)
    df.loc[df.index[::3], "a"] = np.nan  # a third of a's labels are missing
    df.loc[df.index[:40], "b"] = np.nan  # and whole batches of b's
    for method in polytask.balancing.METHODS:
        opts = {"weights": {"a": 1.0, "b": 0.01}} if method == "weights" else {}
        for level in ("parameters", "representation"):
            model = polytask.fit(
                df,
                tasks={"a": RAW, "b": RAW},
                balancing={"method": method, "jacobian": level, **opts},
                epochs=2,
                hidden=[16],
                batch_size=32,
                seed=0,
            )
            losses = model.history[-1]["train"]["loss"]
            assert all(np.isfinite(v) for v in losses.values()), (method, level, losses)
            if polytask.balancing.METHODS[method].level == "loss":
                break  # the Jacobian level only matters to gradient methods
