"""Δm, verdicts, grouping and the conflict summary on small fixed examples worked by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from polytask import PolytaskError
from polytask.analysis.conflict import cosine_matrix, summarise, summarise_many
from polytask.analysis.grouping import group_score, partitions, recommend_groups
from polytask.config import parse_config
from polytask.metrics.delta_m import FORMULA, delta_m, headline_of
from polytask.metrics.verdict import compare_values, welch_p
from polytask.model import build_tasks

HEADLINE = {"death": {"auroc": True}, "stay": {"mae": False}}


def test_delta_m_matches_a_hand_computation_better_is_negative() -> None:
    stl = {"death": {"auroc": 0.75}, "stay": {"mae": 10.0}}
    mtl = {"death": {"auroc": 0.80}, "stay": {"mae": 9.0}}
    # auroc (higher better): −(0.80 − 0.75)/0.75 × 100 = −6.6667
    # mae (lower better):    +(9 − 10)/10 × 100      = −10
    # Δm = (−6.6667 − 10) / 2 = −8.3333
    dm = delta_m(mtl, stl, HEADLINE)
    assert dm.value == pytest.approx(-25 / 3, abs=1e-9)
    assert dm.terms == pytest.approx({"death.auroc": -20 / 3, "stay.mae": -10.0})
    assert dm.k == 2 and dm.skipped == []


def test_delta_m_worse_is_positive_and_in_percent() -> None:
    stl = {"death": {"auroc": 0.75}, "stay": {"mae": 10.0}}
    mtl = {"death": {"auroc": 0.60}, "stay": {"mae": 12.5}}
    # auroc: −(0.60 − 0.75)/0.75 × 100 = +20; mae: +(12.5 − 10)/10 × 100 = +25
    assert delta_m(mtl, stl, HEADLINE).value == pytest.approx(22.5)
    assert delta_m(stl, stl, HEADLINE).value == 0.0


def test_k_counts_metrics_not_tasks() -> None:
    headline = {"seg": {"miou": True, "pixel_accuracy": True}, "stay": {"mae": False}}
    stl = {"seg": {"miou": 0.50, "pixel_accuracy": 0.80}, "stay": {"mae": 10.0}}
    mtl = {"seg": {"miou": 0.55, "pixel_accuracy": 0.80}, "stay": {"mae": 11.0}}
    # terms −10, 0, +10 over K = 3 metrics (not 2 tasks): 0; the task mean would differ
    dm = delta_m(mtl, stl, headline)
    assert dm.k == 3
    assert dm.value == pytest.approx(0.0, abs=1e-12)
    mtl["stay"]["mae"] = 13.0  # +30 -> (−10 + 0 + 30)/3
    assert delta_m(mtl, stl, headline).value == pytest.approx(20 / 3)


def test_undefined_metrics_are_left_out_and_named() -> None:
    stl = {"death": {"auroc": None}, "stay": {"mae": 10.0}}
    mtl = {"death": {"auroc": 0.8}, "stay": {"mae": 8.0}}
    dm = delta_m(mtl, stl, HEADLINE)
    assert dm.skipped == ["death.auroc"]
    assert dm.value == pytest.approx(-20.0)
    assert delta_m({}, stl, HEADLINE).value is None


def test_formula_is_stated() -> None:
    assert "K = number of headline metrics" in FORMULA and "lower is better" in FORMULA


def test_headline_metrics_follow_the_design_contract() -> None:
    cfg = parse_config(
        {
            "tasks": [
                {"name": "b", "kind": "binary"},
                {"name": "r", "kind": "regression"},
                {"name": "m", "kind": "multiclass"},
                {"name": "l", "kind": "multilabel"},
                {"name": "c", "kind": "count"},
            ]
        }
    )
    assert headline_of(build_tasks(cfg)) == {
        "b": {"auroc": True},
        "r": {"mae": False},
        "m": {"accuracy": True},
        "l": {"macro_f1": True},
        "c": {"mae": False},
    }


# -- verdicts ----------------------------------------------------------------------------------


def test_a_clear_gain_helps_and_a_clear_loss_is_negative_transfer() -> None:
    stl = [0.70, 0.71, 0.69]
    gain = compare_values("death", "auroc", True, stl, [0.80, 0.81, 0.79])
    assert gain.direction == "better" and gain.clear and gain.label == "sharing helps"
    assert gain.difference == pytest.approx(0.10)
    loss = compare_values("stay", "mae", False, [10.0, 10.2, 9.8], [11.0, 11.1, 10.9])
    assert loss.direction == "worse" and loss.clear and loss.negative_transfer
    assert loss.label == "negative transfer"
    noisy = compare_values("death", "auroc", True, [0.70, 0.80, 0.60], [0.72, 0.62, 0.81])
    assert noisy.direction == "better" and not noisy.clear
    assert noisy.label == "better, within seed-to-seed spread"


def test_welch_p_matches_scipy_and_needs_two_seeds() -> None:
    a, b = [1.0, 2.0, 3.5, 2.2], [2.5, 3.1, 4.0]
    assert welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p([1.0], [2.0, 3.0]) is None
    one = compare_values("t", "auroc", True, [0.7], [0.9])
    assert one.p_value is None and not one.clear and one.direction == "better"


# -- grouping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "k", "stirling"), [(4, 2, 7), (5, 3, 25), (6, 2, 31), (3, 3, 1)])
def test_partitions_are_each_set_partition_once(n: int, k: int, stirling: int) -> None:
    found = list(partitions(n, k))
    assert len(found) == stirling
    canon = {tuple(sorted(tuple(sorted(b)) for b in p)) for p in found}
    assert len(canon) == stirling
    for p in found:
        assert sorted(itertools.chain.from_iterable(p)) == list(range(n))
        assert all(p_ for p_ in p)


def test_grouping_keeps_tasks_that_help_each_other_together() -> None:
    names = ["a", "b", "c", "d"]
    z = np.array(
        [
            [9.0, 2.0, -1.0, -1.0],
            [3.0, 9.0, -1.0, -1.0],
            [-1.0, -1.0, 9.0, 1.0],
            [-1.0, -1.0, 0.5, 9.0],
        ]
    )
    best = recommend_groups(names, z, 2)
    assert sorted(sorted(g) for g in best.groups) == [["a", "b"], ["c", "d"]]
    # each task: mean affinity onto it from its group's others: a 3, b 2, c 0.5, d 1
    assert best.score == pytest.approx(6.5)
    assert group_score(z, [[0, 1], [2, 3]]) == pytest.approx(6.5)
    # one model: onto a (3 − 1 − 1)/3, b (2 − 1 − 1)/3, c (−1 − 1 + 0.5)/3, d (−1 − 1 + 1)/3
    assert recommend_groups(names, z, 1).score == pytest.approx((1 + 0 - 1.5 - 1) / 3)
    assert recommend_groups(names, z, 4).score == 0.0
    assert recommend_groups(names, z, 9).groups == [["a"], ["b"], ["c"], ["d"]]


def test_grouping_limit_is_an_error_that_says_so() -> None:
    with pytest.raises(PolytaskError, match="up to 10 tasks"):
        recommend_groups([f"t{i}" for i in range(11)], np.zeros((11, 11)), 2)


# -- gradient conflict ---------------------------------------------------------------------------


def test_conflict_summary_per_pair() -> None:
    history = [
        {"epoch": 1, "cosine": {"a~b": -0.2, "a~c": 0.5}},
        {"epoch": 2, "cosine": {"a~b": 0.0, "a~c": 0.5}},
        {"epoch": 3},
        {"epoch": 4, "cosine": {"a~b": 0.2, "a~c": 0.5}},
    ]
    s = {p.pair: p for p in summarise(history)}
    assert s["a~b"].mean == pytest.approx(0.0, abs=1e-12)
    assert s["a~b"].negative_share == pytest.approx(1 / 3)
    assert s["a~b"].trend == pytest.approx(0.4)  # -0.2 -> 0.2 from start to end
    assert s["a~b"].epochs == 3
    assert s["a~c"].trend == pytest.approx(0.0, abs=1e-12)
    # a history without counts: each epoch's mean is one measurement, too few for a verdict
    assert s["a~c"].measurements == 3 and s["a~c"].label == "too few measurements"
    m = cosine_matrix(["a", "b", "c"], list(s.values()))
    assert m[0, 2] == m[2, 0] == pytest.approx(0.5) and np.isnan(m[1, 2]) and m[1, 1] == 1.0
    both = {p.pair: p for p in summarise_many([history, [{"epoch": 1, "cosine": {"a~b": -0.6}}]])}
    assert both["a~b"].mean == pytest.approx(-0.15) and both["a~b"].negative_share == 0.5
