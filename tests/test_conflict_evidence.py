"""Gradient conflict carries its evidence (issue 17, point 3): cosines are measured a few
times an epoch however short the run, every figure comes with its count, and a pair is
"conflicting" only by the stated rule (polytask.analysis.conflict)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from polytask.analysis.conflict import MIN_MEASUREMENTS, summarise, summarise_many
from polytask.api import build_config, train_run
from polytask.evaluation.sections import conflict_cells, conflict_lines
from polytask.training.balance_log import MIN_PER_EPOCH, BalanceLog
from tests.conftest import make_synthetic


def history_of(samples: list[list[float]]) -> list[dict]:
    """Epoch records as the trainer writes them, from each epoch's raw cosines."""
    return [
        {
            "epoch": i + 1,
            "cosine": {"a~b": float(np.mean(s))},
            "cosine_n": {"a~b": len(s)},
            "cosine_sd": {"a~b": float(np.std(s))},
        }
        for i, s in enumerate(samples)
    ]


def test_a_short_run_logs_cosines_several_times_an_epoch() -> None:
    # 100 rows, 70 to train in batches of 10: 7 steps an epoch, log_every left at 100
    cfg = build_config(None, ["y1:regression", "y2:binary"], epochs=2, hidden=[8], batch_size=10)
    assert cfg.balancing.log_every == 100
    model = train_run(cfg, make_synthetic(100, seed=0), verbose=False)
    counts = [r["cosine_n"]["y1~y2"] for r in model.history]
    assert counts == [7, 7]  # every max(1, 7 // MIN_PER_EPOCH) = 1 step, not once a run
    assert all(0 <= r["cosine_sd"]["y1~y2"] <= 2 for r in model.history)


def test_long_epochs_keep_log_every() -> None:
    assert BalanceLog(["a", "b"], log_every=100, steps_per_epoch=1000).every == 100
    assert BalanceLog(["a", "b"], log_every=100, steps_per_epoch=60).every == 60 // MIN_PER_EPOCH
    assert BalanceLog(["a", "b"], log_every=100, steps_per_epoch=3).every == 1
    assert BalanceLog(["a", "b"], log_every=0, steps_per_epoch=60).every == 0  # off stays off


def test_the_pooled_interval_is_the_one_over_all_measurements() -> None:
    rng = np.random.default_rng(0)
    samples = [list(rng.normal(-0.2, 0.1, n)) for n in (3, 5, 4)]
    (p,) = summarise(history_of(samples))
    flat = np.concatenate(samples)
    half = stats.t.ppf(0.975, len(flat) - 1) * flat.std(ddof=1) / math.sqrt(len(flat))
    assert p.measurements == 12 and p.epochs == 3
    assert p.mean == pytest.approx(flat.mean())
    assert (p.low, p.high) == pytest.approx((flat.mean() - half, flat.mean() + half))
    assert p.label == "conflicting"


@pytest.mark.parametrize(
    ("samples", "label"),
    [
        ([[-0.9]], "too few measurements"),  # the one measurement
        ([[-0.6, -0.5]] * 3, "too few measurements"),  # 6 < MIN_MEASUREMENTS
        ([[-0.005, 0.01, -0.02, 0.0]] * 3, "near orthogonal"),  # the issue's -0.005
        ([[-0.3, -0.25, -0.35, -0.3]] * 3, "conflicting"),
        ([[0.5, 0.45, 0.55, 0.5]] * 3, "aligned"),
        ([[0.4, 0.5, 0.45, 0.5]] * 3 + [[-0.2, -0.1, -0.15, -0.2]], "often conflicting"),
        ([[-0.9, 0.8, -0.7, 0.9]] * 3, "inconclusive"),  # a wide interval
        # hovering around 0: half the epochs below 0 is no conflict (the wine walkthrough)
        ([[-0.01, 0.0], [0.01, 0.0], [-0.02, -0.01], [0.0, 0.01], [-0.01, 0.0]], "near orthogonal"),
    ],
)
def test_the_label_follows_the_stated_rule(samples: list[list[float]], label: str) -> None:
    (p,) = summarise(history_of(samples))
    assert p.label == label, p
    assert (p.measurements >= MIN_MEASUREMENTS) == (label != "too few measurements")


def test_every_figure_comes_with_its_count() -> None:
    one = history_of([[-0.3, -0.2, -0.25, -0.3]] * 2)
    (p,) = summarise_many([one, one])
    assert p.measurements == 16 and p.epochs == 4
    pair, mean, interval, count, negative, _trend, label = conflict_cells([p])[0]
    assert (pair, count, negative, label) == (
        "a / b",
        "16 over 4 epochs",
        "100% of 4",
        "conflicting",
    )
    assert interval.startswith("[-0.") and mean == "-0.263"
    (line,) = conflict_lines([p])
    assert line.startswith("a / b: conflicting, mean cosine -0.263 (16 measurements over 4")
