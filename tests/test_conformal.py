"""Split-conformal intervals for regression and count tasks: the finite-sample quantile,
coverage over many draws, residuals in the label's units (a log-trained target too),
counts clipped at 0, and TASK_lower/TASK_upper in predict, evaluate and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polytask
from polytask.features.splits import split_frame
from polytask.tasks.conformal import Conformal
from tests.conftest import assert_user_error


def _fitted(residuals: np.ndarray, coverage: float = 0.9) -> Conformal:
    c = Conformal(coverage)
    c.fit(np.zeros(len(residuals)), residuals)
    return c


def test_the_radius_is_the_finite_sample_quantile() -> None:
    c = _fitted(np.arange(1.0, 20.0))  # n = 19: rank ceil(20 * 0.9) = 18
    assert c.radius() == 18.0
    assert c.radius(0.5) == 10.0  # ceil(20 * 0.5) = 10
    assert math.isinf(_fitted(np.arange(1.0, 6.0)).radius())  # ceil(6 * 0.9) = 6 > 5
    big = _fitted(np.arange(10_000.0))  # kept as 4096 order statistics
    assert big.residuals is not None and big.residuals.size == 4096
    assert abs(big.radius() - 9000.0) <= 3.0  # the 9001st smallest of 0..9999
    lower, upper = c.bounds(np.array([5.0]), floor=0.0)
    assert lower[0] == 0.0 and upper[0] == 23.0


def test_coverage_holds_over_many_exchangeable_draws() -> None:
    rng = np.random.default_rng(0)
    n, hits = 50, []
    for _ in range(400):
        noise = rng.standard_t(3, n + 200)  # heavy tails: no normal assumption
        c = _fitted(noise[:n])
        hits.append(np.mean(np.abs(noise[n:]) <= c.radius()))
    # at least 1 - alpha, and at most 1 - alpha + 1/(n + 1), on average
    assert 0.9 - 0.01 <= float(np.mean(hits)) <= 0.9 + 1 / (n + 1) + 0.01


def _stays(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    stay = np.exp(1.5 + 0.6 * x[:, 0] + 0.4 * rng.normal(size=n))  # skewed, > 0
    visits = rng.poisson(np.exp(0.3 + 0.5 * x[:, 1]))
    return pd.DataFrame(
        {"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "stay": stay, "visits": visits}
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("conformal") / "run"
    df = _stays(800, seed=1)
    tasks = ["stay:regression:transform=log1p", "visits:count"]
    polytask.fit(df, tasks, epochs=8, hidden=[16], out=out, seed=3)
    return out, df


def test_residuals_are_in_the_labels_units_even_on_a_log_scale(
    run: tuple[Path, pd.DataFrame],
) -> None:
    out, df = run
    model = polytask.load(out)
    _, val, test = split_frame(df, 0.15, 0.15, seed=3)
    assert val is not None and test is not None
    pred = model.predict(val)
    res = np.sort(np.abs(val["stay"].to_numpy() - pred["stay"].to_numpy()))
    k = math.ceil((len(val) + 1) * 0.9)
    q = res[k - 1]  # the 90% half-width in days, not in log days
    got = model.predict(test)
    np.testing.assert_allclose(got["stay_upper"] - got["stay"], q, rtol=1e-6)
    assert (got["stay_lower"] >= 0).all()  # a log-trained target is never negative
    np.testing.assert_allclose(got["stay_lower"], np.maximum(got["stay"] - q, 0), atol=1e-5)
    assert (got["visits_lower"] >= 0).all() and (got["visits_lower"] == 0).any()
    scores = model.evaluate(test)
    inside = (test["stay"] >= got["stay_lower"]) & (test["stay"] <= got["stay_upper"])
    assert scores["stay"]["coverage"] == pytest.approx(inside.mean())
    assert scores["stay"]["interval_width"] == pytest.approx(
        (got["stay_upper"] - got["stay_lower"]).mean()
    )
    cal = json.loads((out / "calibration.json").read_text())["tasks"]["stay"]
    assert cal["kind"] == "intervals" and cal["radius"] == pytest.approx(q)


def test_coverage_is_set_when_predicting(run: tuple[Path, pd.DataFrame]) -> None:
    out, df = run
    model = polytask.load(out)
    rows = df.head(30)
    wide = model.predict(rows)
    with model.corrections(coverage=0.5):
        narrow = model.predict(rows)
        assert model.evaluate(df)["stay"]["coverage"] < 0.7
    assert ((narrow["stay_upper"] - narrow["stay"]) < (wide["stay_upper"] - wide["stay"])).all()
    assert model.predict(rows).equals(wide)  # back to the task's option afterwards
    with (
        pytest.raises(polytask.PolytaskError, match="between 0 and 1"),
        model.corrections(coverage=1.5),
    ):
        pass


def test_cli_predict_and_evaluate_take_coverage(run_cli, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, df = run
    data = tmp_path / "d.csv"
    df.head(100).to_csv(data, index=False)
    pred_path = tmp_path / "p.csv"
    r = run_cli(["predict", out, "--data", data, "--output", pred_path, "--coverage", "0.8"])
    assert r.rc == 0, r.err
    pred = pd.read_csv(pred_path)
    assert {"stay_lower", "stay_upper", "visits_lower", "visits_upper"} <= set(pred.columns)
    ev = run_cli(["evaluate", out, "--data", data, "--json", "--coverage", "0.8"])
    assert 0 < json.loads(ev.out)["stay"]["coverage"] <= 1
    bad = run_cli(
        ["predict", out, "--data", data, "--output", tmp_path / "q.csv", "--coverage", "2"]
    )
    assert_user_error(bad, "--coverage", "between 0 and 1")
    plain = tmp_path / "plain"
    polytask.fit(df.head(200), ["stay:regression:intervals=none"], epochs=1, hidden=[4], out=plain)
    none = run_cli(
        ["predict", plain, "--data", data, "--output", tmp_path / "r.csv", "--coverage", "0.8"]
    )
    assert_user_error(none, "no task of this run has fitted intervals")
    assert "stay_lower" not in polytask.load(plain).predict(df.head(3)).columns
