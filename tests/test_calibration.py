"""Temperature scaling of binary and multiclass tasks, fitted on validation after
training: the fit recovers a known temperature, ECE and Brier are the textbook numbers,
predictions use the temperature (and not without it), and the report shows it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import polytask
from polytask.evaluation.report import write_report
from polytask.tasks.calibration import _fitted, brier, ece, fit_temperature, reliability
from tests.conftest import make_table


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_fit_recovers_the_temperature_of_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < _sigmoid(z)).astype(float)
    fitted = fit_temperature(3.0 * z, y, binary=True)  # three times too confident
    assert fitted["temperature"] == pytest.approx(3.0, rel=0.08)
    assert fitted["nll_after"] < fitted["nll_before"] - 0.05
    k = rng.normal(0, 1.0, (4000, 4))
    p = np.exp(k) / np.exp(k).sum(1, keepdims=True)
    cls = (rng.random((4000, 1)) > p.cumsum(1)).sum(1)  # a draw from each row's p
    assert fit_temperature(0.5 * k, cls, binary=False)["temperature"] == pytest.approx(
        0.5, rel=0.08
    )
    assert fit_temperature(z[:5], y[:5], binary=True)["temperature"] is None  # too few rows


def _fresh_nll_change(scale: float, rows: int, plain: bool) -> float:
    """Mean change of the NLL on fresh rows when a temperature fitted on ``rows``
    validation rows of logits ``scale`` times too confident is applied (24 draws)."""
    rng = np.random.default_rng(1)
    z_new = rng.normal(0, 1.5, 20_000)
    y_new = (rng.random(20_000) < _sigmoid(z_new)).astype(float)

    def nll(z: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0, z) - y_new * z))

    changes = []
    for _ in range(24):
        z = rng.normal(0, 1.5, rows)
        y = (rng.random(rows) < _sigmoid(z)).astype(float)
        if plain:  # the bare NLL minimiser: no prior, no two-fold check
            t = _fitted(torch.tensor(scale * z), torch.tensor(y), True, prior_sd=None)
        else:
            t = fit_temperature(scale * z, y, binary=True)["temperature"]
        changes.append(nll(scale * z_new / t) - nll(scale * z_new))
    return float(np.mean(changes))


def test_a_temperature_fitted_on_few_rows_rarely_hurts() -> None:
    # calibrated logits, 45 validation rows: the bare fit fits noise and raises the NLL
    # of new rows; the prior and the two-fold check keep most of that harm away
    plain, ours = _fresh_nll_change(1.0, 45, True), _fresh_nll_change(1.0, 45, False)
    assert plain > 0.015 and ours < plain / 2  # 0.029 and 0.011 here
    # and a real miscalibration is still corrected from those few rows (-0.041 bare)
    assert _fresh_nll_change(2.0, 45, False) < -0.025  # -0.037 here


def test_ece_and_brier_are_the_textbook_numbers() -> None:
    p = np.array([0.1, 0.9, 0.8, 0.3])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    # 15 equal-width bins: 0.1 | 0.3 | 0.8 | 0.9 each alone; |freq - conf| per bin
    assert ece(p, y) == pytest.approx((0.1 + 0.1 + 0.8 + 0.7) / 4)
    assert brier(p, y) == pytest.approx((0.01 + 0.01 + 0.64 + 0.49) / 4)
    q = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    c = np.array([0, 2])
    assert brier(q, c) == pytest.approx(((0.09 + 0.04 + 0.01) + (0.04 + 0.25 + 0.49)) / 2)
    # top-label ECE: confidences 0.7 (right) and 0.5 (wrong)
    assert ece(q, c) == pytest.approx((0.3 + 0.5) / 2)
    bins = reliability(p, y)
    assert sum(bins["count"]) == 4 and len(bins["edges"]) == 16


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("calibration") / "run"
    df = make_table(700, seed=4)
    tasks = ["y_reg:regression", "y_bin:binary", "y_cls:multiclass"]
    # wide, long-trained, no early stopping: over-confident probabilities to correct
    polytask.fit(df, tasks, drop=["id"], epochs=15, hidden=[64, 64], out=out, patience=100)
    return out


def test_predictions_use_the_temperature_and_can_leave_it_out(run: Path) -> None:
    model = polytask.load(run)
    states = {
        t["name"]: t["state"] for t in json.loads((run / "preprocessing.json").read_text())["tasks"]
    }
    t_bin, t_cls = states["y_bin"]["temperature"], states["y_cls"]["temperature"]
    assert t_bin is not None and t_cls is not None and t_bin != 1.0
    rows = make_table(50, seed=9)
    raw = [r.astype(np.float64) for r in model.predict_raw(rows)]
    got = model.predict(rows)
    np.testing.assert_allclose(got["y_bin_proba"], _sigmoid(raw[1][:, 0] / t_bin), rtol=1e-6)
    z = raw[2] / t_cls
    soft = np.exp(z - z.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(got["y_cls_proba_low"], soft[:, model.tasks[2].classes.index("low")])
    with model.corrections(calibrated=False):
        plain = model.predict(rows)
    np.testing.assert_allclose(plain["y_bin_proba"], _sigmoid(raw[1][:, 0]), rtol=1e-6)
    assert (plain["y_bin"] == got["y_bin"]).all() and (plain["y_cls"] == got["y_cls"]).all()
    assert model.predict(rows)["y_bin_proba"].equals(got["y_bin_proba"])  # restored after


def test_temperature_lowers_validation_nll_and_is_reported(run: Path) -> None:
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["fitted_on"] == "validation" and cal["evidence_on"] == "test"
    for task in ("y_bin", "y_cls"):
        fitted = cal["tasks"][task]
        assert fitted["kind"] == "temperature"
        assert fitted["nll_after"] <= fitted["nll_before"]
        ev = fitted["evidence"]
        assert ev["before"]["ece"] is not None and ev["after"]["ece"] is not None
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert metrics["y_bin"]["ece"] == pytest.approx(
        cal["tasks"]["y_bin"]["evidence"]["after"]["ece"]
    )
    assert metrics["y_bin"]["brier"] == pytest.approx(
        cal["tasks"]["y_bin"]["evidence"]["after"]["brier"]
    )
    page = write_report(run).read_text()
    assert 'id="calibration"' in page
    assert (run / "report_plots" / "reliability.png").is_file()
    assert "ECE (test)" in page and "equal-width bins" in page


def test_a_run_without_a_temperature_predicts_as_before(run: Path, tmp_path: Path) -> None:
    """A run saved before calibration existed has no temperature in its task state: it
    loads and predicts the plain probabilities; `calibration: none` fits none."""
    import shutil

    old = Path(shutil.copytree(run, tmp_path / "old"))
    prep = json.loads((old / "preprocessing.json").read_text())
    for t in prep["tasks"]:
        t["state"].pop("temperature", None)
        t["state"].pop("conformal", None)
    (old / "preprocessing.json").write_text(json.dumps(prep))
    (old / "calibration.json").unlink()
    rows = make_table(40, seed=3)
    model = polytask.load(run)
    with model.corrections(calibrated=False):
        want = model.predict(rows)
    got = polytask.load(old).predict(rows)
    assert list(got.columns) == [c for c in want.columns if not c.endswith(("_lower", "_upper"))]
    pd.testing.assert_frame_equal(got, want[got.columns])

    df = make_table(200, seed=5)
    none = polytask.fit(df, ["y_bin:binary:calibration=none"], drop=["id"], epochs=2, hidden=[8])
    assert none.tasks[0].temperature.value is None and none.calibration == {}
