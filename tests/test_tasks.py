"""Task kinds: masked losses against hand computations, metrics against scikit-learn on the
labelled rows only, decoding round trips and JSON state round trips."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from polytask.errors import PolytaskError
from polytask.metrics.scoring import higher_is_better, score
from polytask.tasks import KINDS as REGISTERED
from polytask.tasks import Task, make_task

NAN = np.nan


def fitted(kind: str, labels: list[Any] | pd.Series, name: str = "t", **options: Any) -> Task:
    task = make_task(name, kind, [name], options)
    task.fit(pd.Series(labels, name=name))
    return task


def wide_frame(rows: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["a", "b", "c"])


def fitted_wide(frame: pd.DataFrame) -> Task:
    task = make_task("tags", "multilabel", list(frame.columns), {})
    task.fit(frame)
    return task


def masked_mean(elem: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return elem[mask].mean()


# -- regression ------------------------------------------------------------------------------

REG_LABELS = [1.0, 2.0, NAN, 4.0, 8.0, NAN, -3.0, 0.5]


def test_regression_standardises_on_labelled_rows_and_masks_mse() -> None:
    task = fitted("regression", REG_LABELS)
    y = np.array(REG_LABELS)
    present = y[~np.isnan(y)]
    assert task.log is False
    assert task.mean == pytest.approx(present.mean())
    assert task.std == pytest.approx(present.std())  # population std, as documented

    target, mask = task.encode(pd.Series(REG_LABELS, name="t"))
    assert mask.tolist() == [not np.isnan(v) for v in REG_LABELS]
    expected_z = (present - present.mean()) / present.std()
    np.testing.assert_allclose(target[mask].numpy(), expected_z, rtol=1e-6)
    assert torch.all(target[~mask] == 0)  # harmless placeholder

    out = torch.randn(len(REG_LABELS), 1, generator=torch.Generator().manual_seed(0))
    expected = masked_mean((out[:, 0] - target) ** 2, mask)
    assert task.loss(out, target, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    # mask=None means every row labelled: the plain mean
    assert task.loss(out, target, None).item() == pytest.approx(
        ((out[:, 0] - target) ** 2).mean().item(), rel=1e-6
    )


def test_regression_huber_loss_by_hand() -> None:
    task = fitted("regression", REG_LABELS, loss="huber", huber_delta=0.5)
    target, mask = task.encode(pd.Series(REG_LABELS, name="t"))
    offsets = torch.tensor([0.1, -0.3, 2.0, -1.5, 0.2, 5.0, -0.05, 0.7])
    out = (target + offsets)[:, None]
    d = out[:, 0] - target
    a = d.abs()
    elem = torch.where(a <= 0.5, 0.5 * d**2, 0.5 * (a - 0.25))  # delta * (|d| - delta / 2)
    assert (a[mask] > 0.5).any() and (a[mask] <= 0.5).any()  # both branches exercised
    assert task.loss(out, target, mask).item() == pytest.approx(
        masked_mean(elem, mask).item(), rel=1e-6
    )


def skewed(n: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).exponential(5.0, n)


def test_regression_auto_log1p_for_skewed_non_negative_target() -> None:
    y = skewed()
    task = fitted("regression", y)
    assert task.log is True
    ly = np.log1p(y)
    assert task.mean == pytest.approx(ly.mean())
    assert task.std == pytest.approx(ly.std())
    target, mask = task.encode(pd.Series(y, name="t"))
    assert mask.all()
    np.testing.assert_allclose(target.numpy(), (ly - ly.mean()) / ly.std(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("values", "transform", "log"),
    [
        ("skewed", "none", False),  # forced off
        ("uniform", "log1p", True),  # forced on
        ("uniform", "auto", False),  # not skewed
        ("skewed_negative", "auto", False),  # negative values never get a log
        ("skewed_few_unique", "auto", False),  # fewer than 10 distinct values
    ],
)
def test_regression_log1p_auto_and_forced(values: str, transform: str, log: bool) -> None:
    y = {
        "skewed": skewed(),
        "uniform": np.random.default_rng(0).uniform(1, 10, 300),
        "skewed_negative": skewed() - 1.0,
        "skewed_few_unique": np.round(skewed() / 30),
    }[values]
    if values == "skewed_few_unique":
        assert np.unique(y).size < 10 and pd.Series(y).skew() > 1
    task = fitted("regression", y, transform=transform)
    assert task.log is log
    z = np.log1p(y) if log else y
    assert task.mean == pytest.approx(z.mean())


def test_regression_forced_log1p_rejects_negative_labels() -> None:
    with pytest.raises(PolytaskError, match="non-negative"):
        fitted("regression", [1.0, -2.0, 3.0], transform="log1p")


def test_regression_without_standardisation_keeps_raw_scale() -> None:
    task = fitted("regression", [1.0, 2.0, 3.0], standardize=False, transform="none")
    target, _ = task.encode(pd.Series([1.0, 2.0, 3.0], name="t"))
    assert target.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("log", [False, True])
def test_regression_metrics_match_sklearn_on_labelled_rows(log: bool) -> None:
    rng = np.random.default_rng(3)
    y = skewed(60, seed=4) if log else rng.normal(10, 3, 60)
    y[rng.random(60) < 0.3] = NAN
    task = fitted("regression", y, transform="log1p" if log else "none")
    target, mask = task.encode(pd.Series(y, name="t"))
    out = rng.normal(size=(60, 1)).astype(np.float32)
    result = score([task], [torch.from_numpy(out)], [target], [mask])["t"]

    m = ~np.isnan(y)
    z = out[:, 0].astype(np.float64) * task.std + task.mean
    pred = np.expm1(z) if log else z
    true, pred = y[m], pred[m]
    assert result["n"] == int(m.sum())
    assert result["mae"] == pytest.approx(mean_absolute_error(true, pred), rel=1e-5)
    assert result["rmse"] == pytest.approx(np.sqrt(mean_squared_error(true, pred)), rel=1e-5)
    assert result["r2"] == pytest.approx(r2_score(true, pred), rel=1e-5, abs=1e-6)
    if log:
        expected = r2_score(np.log1p(true), np.log1p(np.maximum(pred, 0)))
        assert result["r2_log"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    else:
        assert "r2_log" not in result


def test_regression_rejects_text_and_infinite_labels() -> None:
    with pytest.raises(PolytaskError, match=r"must be numbers, found 'abc'"):
        fitted("regression", pd.Series(["1.5", "abc", "2"], dtype=object))
    with pytest.raises(PolytaskError, match="infinite"):
        fitted("regression", [1.0, np.inf, 2.0])


# -- binary ----------------------------------------------------------------------------------

BIN_LABELS = ["yes", "no", None, "no", "yes", "yes", None, "no", "yes", "no"]


def binary_y(labels: list[Any]) -> np.ndarray:
    return np.array([1.0 if v == "yes" else 0.0 for v in labels])


@pytest.mark.parametrize("pos_weight", [None, 3.0, "balanced"])
def test_binary_bce_with_pos_weight_by_hand(pos_weight: float | str | None) -> None:
    task = fitted("binary", BIN_LABELS, pos_weight=pos_weight)
    target, mask = task.encode(pd.Series(BIN_LABELS, name="t"))
    assert mask.tolist() == [v is not None for v in BIN_LABELS]
    assert target[mask].tolist() == binary_y([v for v in BIN_LABELS if v is not None]).tolist()

    rate = 4 / 8
    expected_pw = {None: 1.0, 3.0: 3.0, "balanced": (1 - rate) / rate}[pos_weight]
    if pos_weight is not None:
        assert task.pos_weight == pytest.approx(expected_pw)
    out = 2 * torch.randn(len(BIN_LABELS), 1, generator=torch.Generator().manual_seed(2))
    o = out[:, 0]
    elem = -(expected_pw * target * F.logsigmoid(o) + (1 - target) * F.logsigmoid(-o))
    assert task.loss(out, target, mask).item() == pytest.approx(
        masked_mean(elem, mask).item(), rel=1e-6
    )


def test_binary_balanced_pos_weight_uses_training_base_rate() -> None:
    labels = [1] * 10 + [0] * 30
    task = fitted("binary", labels, pos_weight="balanced")
    assert task.base_rate == pytest.approx(0.25)
    assert task.pos_weight == pytest.approx(3.0)
    # the head starts at the base rate's log-odds
    assert task.initial_bias().item() == pytest.approx(np.log(0.25 / 0.75), rel=1e-6)


def test_binary_metrics_match_sklearn_on_labelled_rows() -> None:
    rng = np.random.default_rng(5)
    labels = list(rng.choice(["yes", "no"], 80).astype(object))
    for i in rng.choice(80, 25, replace=False):
        labels[i] = None
    task = fitted("binary", labels)
    target, mask = task.encode(pd.Series(labels, name="t"))
    out = rng.normal(size=(80, 1)).astype(np.float32)
    result = score([task], [torch.from_numpy(out)], [target], [mask])["t"]

    m = mask.numpy()
    y = target.numpy()[m].astype(int)
    p = 1 / (1 + np.exp(-out[:, 0].astype(np.float64)))[m]
    assert result["n"] == 55
    assert result["auroc"] == pytest.approx(roc_auc_score(y, p), rel=1e-9)
    assert result["accuracy"] == pytest.approx(accuracy_score(y, p >= 0.5))
    assert result["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-6)


def test_binary_auroc_is_none_with_one_class_present() -> None:
    task = fitted("binary", [1, 0, 1, 0])
    target, mask = task.encode(pd.Series([1, 1, 1, None], name="t"))
    result = task.metrics(np.zeros((4, 1)), target.numpy(), mask.numpy())
    assert result["auroc"] is None
    assert result["accuracy"] == pytest.approx(1.0)  # p = 0.5 >= threshold -> positive


def test_binary_threshold_option_moves_the_decision() -> None:
    task = fitted("binary", [1, 0, 1, 0], threshold=0.8)
    logits = np.log(np.array([0.7, 0.9]) / (1 - np.array([0.7, 0.9])))[:, None]
    decoded = task.decode(logits)
    assert decoded["t"].tolist() == [0, 1]
    np.testing.assert_allclose(decoded["t_proba"], [0.7, 0.9])


# -- multiclass ------------------------------------------------------------------------------

CLS_STR = ["low", "high", None, "mid", "low", "high", "mid", None, "low"]
CLS_INT = [3, 1, None, 2, 3, 1, 2, None, 10]


@pytest.mark.parametrize("labels", [CLS_STR, CLS_INT], ids=["str", "int"])
def test_multiclass_cross_entropy_by_hand(labels: list[Any]) -> None:
    task = fitted("multiclass", pd.Series(labels, dtype=object))
    target, mask = task.encode(pd.Series(labels, name="t", dtype=object))
    assert mask.tolist() == [v is not None for v in labels]
    for i, v in enumerate(labels):
        if v is not None:
            assert task.classes[int(target[i])] == v
    out = torch.randn(len(labels), task.output_size, generator=torch.Generator().manual_seed(3))
    nll = -torch.log_softmax(out, dim=1).gather(1, target[:, None])[:, 0]
    assert task.loss(out, target, mask).item() == pytest.approx(
        masked_mean(nll, mask).item(), rel=1e-6
    )


def test_multiclass_class_order_numbers_numeric_text_lexical() -> None:
    assert fitted("multiclass", pd.Series(CLS_INT, dtype=object)).classes == [1, 2, 3, 10]
    assert fitted("multiclass", CLS_STR).classes == ["high", "low", "mid"]
    # ints stored as floats because of gaps come back as ints
    task = fitted("multiclass", [3.0, 1.0, NAN, 2.0])
    assert task.classes == [1, 2, 3]
    assert all(type(c) is int for c in task.classes)


def test_multiclass_metrics_match_sklearn_on_labelled_rows() -> None:
    rng = np.random.default_rng(6)
    labels = list(rng.choice(["a", "b", "c", "d"], 90).astype(object))
    for i in rng.choice(90, 30, replace=False):
        labels[i] = None
    task = fitted("multiclass", labels)
    target, mask = task.encode(pd.Series(labels, name="t"))
    out = rng.normal(size=(90, 4)).astype(np.float32)
    result = score([task], [torch.from_numpy(out)], [target], [mask])["t"]
    m = mask.numpy()
    y, pred = target.numpy()[m], out[m].argmax(axis=1)
    assert result["n"] == 60
    assert result["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert result["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))


def test_multiclass_unseen_label_is_unlabelled_with_a_warning() -> None:
    task = fitted("multiclass", ["a", "b", "c"])
    with pytest.warns(UserWarning, match="not seen in training"):
        _, mask = task.encode(pd.Series(["a", "zzz", "c"], name="t"))
    assert mask.tolist() == [True, False, True]


# -- multilabel ------------------------------------------------------------------------------

TAGS = ["a|b", "c", None, "b | c", "a", "", "a|b|c", "b"]


def test_multilabel_one_column_encoding_and_masked_bce() -> None:
    task = fitted("multilabel", TAGS)
    assert task.classes == ["a", "b", "c"]
    target, mask = task.encode(pd.Series(TAGS, name="t"))
    expected = [
        [1, 1, 0],
        [0, 0, 1],
        [0, 0, 0],
        [0, 1, 1],
        [1, 0, 0],
        [0, 0, 0],
        [1, 1, 1],
        [0, 1, 0],
    ]
    assert target.tolist() == expected
    labelled = [v is not None and v != "" for v in TAGS]
    assert mask.tolist() == [[m] * 3 for m in labelled]
    out = torch.randn(len(TAGS), 3, generator=torch.Generator().manual_seed(4))
    elem = -(target * F.logsigmoid(out) + (1 - target) * F.logsigmoid(-out))
    assert task.loss(out, target, mask).item() == pytest.approx(
        masked_mean(elem, mask).item(), rel=1e-6
    )
    assert task.n_labelled(mask.numpy()) == sum(labelled)


def test_multilabel_wide_columns_mask_per_cell() -> None:
    frame = wide_frame([[1, 0, 1], [0, NAN, 1], [NAN, NAN, NAN], [1, 1, 0], [0, 0, NAN]])
    task = fitted_wide(frame)
    assert task.classes == ["a", "b", "c"]
    target, mask = task.encode(frame)
    assert mask.tolist() == (~frame.isna()).to_numpy().tolist()
    assert target.tolist() == frame.fillna(0).to_numpy().tolist()
    out = torch.randn(5, 3, generator=torch.Generator().manual_seed(5))
    elem = -(target * F.logsigmoid(out) + (1 - target) * F.logsigmoid(-out))
    assert task.loss(out, target, mask).item() == pytest.approx(
        masked_mean(elem, mask).item(), rel=1e-6
    )
    assert task.n_labelled(mask.numpy()) == 4
    # base rates per column over its known cells
    np.testing.assert_allclose(task.rates, [2 / 4, 1 / 3, 2 / 3], rtol=1e-6)


def test_multilabel_wide_accepts_true_false_words_and_rejects_others() -> None:
    frame = pd.DataFrame({"a": ["yes", "no", "true"], "b": ["0", "1", None]})
    task = make_task("tags", "multilabel", ["a", "b"], {})
    task.fit(frame)
    target, mask = task.encode(frame)
    assert target.tolist() == [[1, 0], [0, 1], [1, 0]]
    assert mask.tolist() == [[True, True], [True, True], [True, False]]
    bad = pd.DataFrame({"a": [0, 1, 2], "b": [0, 1, 0]})
    with pytest.raises(PolytaskError, match="must hold 0/1"):
        task.fit(bad)


def test_multilabel_one_column_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    sets = rng.random((70, 3)) < 0.4
    labels: list[Any] = [
        "|".join(n for n, on in zip("abc", row, strict=True) if on) for row in sets
    ]
    labels = [v if v else None for v in labels]
    labels[:10] = [None] * 10
    task = fitted("multilabel", labels)
    target, mask = task.encode(pd.Series(labels, name="t"))
    out = rng.normal(size=(70, 3)).astype(np.float32)
    result = score([task], [torch.from_numpy(out)], [target], [mask])["t"]
    rows = mask.numpy().all(axis=1)
    y = target.numpy()[rows].astype(int)
    pred = out[rows] >= 0
    assert result["n"] == int(rows.sum()) == sum(v is not None for v in labels)
    assert result["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert result["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))


def test_multilabel_wide_metrics_use_every_known_cell() -> None:
    rng = np.random.default_rng(8)
    vals = (rng.random((80, 3)) < 0.5).astype(float)
    known = rng.random((80, 3)) > 0.3
    frame = wide_frame(np.where(known, vals, NAN).tolist())
    task = fitted_wide(frame)
    target, mask = task.encode(frame)
    out = rng.normal(size=(80, 3)).astype(np.float32)
    result = score([task], [torch.from_numpy(out)], [target], [mask])["tags"]
    pred = out >= 0
    assert result["n"] == int(known.any(axis=1).sum())
    micro = f1_score(vals[known].astype(int), pred[known])
    macro = np.mean([f1_score(vals[known[:, j], j], pred[known[:, j], j]) for j in range(3)])
    assert result["micro_f1"] == pytest.approx(micro)
    assert result["macro_f1"] == pytest.approx(macro)


def test_multilabel_needs_two_label_names() -> None:
    with pytest.raises(PolytaskError, match="fewer than two labels"):
        fitted("multilabel", ["a", "a", None])


# -- count -----------------------------------------------------------------------------------

COUNTS = [0, 1, 3, NAN, 2, 5, NAN, 12]


def test_count_poisson_loss_by_hand() -> None:
    task = fitted("count", COUNTS)
    present = np.array([c for c in COUNTS if not np.isnan(c)])
    assert task.mean == pytest.approx(present.mean())
    assert task.initial_bias().item() == pytest.approx(np.log(present.mean()), rel=1e-6)
    target, mask = task.encode(pd.Series(COUNTS, name="t"))
    assert mask.tolist() == [not np.isnan(c) for c in COUNTS]
    out = torch.randn(len(COUNTS), 1, generator=torch.Generator().manual_seed(6))
    elem = torch.exp(out[:, 0]) - target * out[:, 0]
    assert task.loss(out, target, mask).item() == pytest.approx(
        masked_mean(elem, mask).item(), rel=1e-6
    )


def test_count_metrics_match_sklearn_on_labelled_rows() -> None:
    rng = np.random.default_rng(9)
    y = rng.poisson(3.0, 50).astype(float)
    y[rng.random(50) < 0.3] = NAN
    task = fitted("count", y)
    target, mask = task.encode(pd.Series(y, name="t"))
    out = rng.normal(1.0, 0.5, size=(50, 1)).astype(np.float32)
    result = score([task], [torch.from_numpy(out)], [target], [mask])["t"]
    m = ~np.isnan(y)
    pred = np.exp(out[:, 0].astype(np.float64))[m]
    assert result["n"] == int(m.sum())
    assert result["mae"] == pytest.approx(mean_absolute_error(y[m], pred), rel=1e-9)
    assert result["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y[m], pred)), rel=1e-9)
    assert result["r2"] == pytest.approx(r2_score(y[m], pred), rel=1e-9)


@pytest.mark.parametrize("bad", [[1, 2.5, 3], [1, -1, 3]])
def test_count_rejects_non_integer_or_negative_labels(bad: list[float]) -> None:
    with pytest.raises(PolytaskError, match="non-negative integers"):
        fitted("count", bad)


# -- shared behaviour over every kind ----------------------------------------------------------


def case(kind: str) -> tuple[Task, Any]:
    """A fitted task of ``kind`` and its raw labels (some missing)."""
    if kind == "regression":
        return fitted("regression", REG_LABELS), pd.Series(REG_LABELS, name="t")
    if kind == "regression_log":
        y = skewed(40)
        y[::7] = NAN
        return fitted("regression", y, transform="log1p"), pd.Series(y, name="t")
    if kind == "binary":
        return fitted("binary", BIN_LABELS, pos_weight=2.0), pd.Series(BIN_LABELS, name="t")
    if kind == "binary_int":
        labels = [1, 0, None, 0, 1]
        return fitted("binary", pd.Series(labels, dtype=object)), pd.Series(
            labels, name="t", dtype=object
        )
    if kind == "binary_bool":
        labels = [True, False, None, True]
        return fitted("binary", pd.Series(labels, dtype=object)), pd.Series(
            labels, name="t", dtype=object
        )
    if kind == "multiclass_str":
        return fitted("multiclass", CLS_STR), pd.Series(CLS_STR, name="t")
    if kind == "multiclass_int":
        return fitted("multiclass", pd.Series(CLS_INT, dtype=object)), pd.Series(
            CLS_INT, name="t", dtype=object
        )
    if kind == "multilabel":
        return fitted("multilabel", TAGS), pd.Series(TAGS, name="t")
    if kind == "multilabel_wide":
        frame = wide_frame([[1, 0, 1], [0, NAN, 1], [NAN, NAN, NAN], [1, 1, 0]])
        return fitted_wide(frame), frame
    if kind == "count":
        return fitted("count", COUNTS), pd.Series(COUNTS, name="t")
    if kind == "entire_space":
        return fitted("entire_space", BIN_LABELS, after="click"), pd.Series(BIN_LABELS, name="t")
    if kind in ("segmentation", "dense_regression"):
        rng = np.random.default_rng(3)
        if kind == "segmentation":
            maps: list[Any] = [rng.integers(0, 3, size=(4, 5)) for _ in range(5)]
        else:
            maps = [rng.normal(2.0, 3.0, size=(4, 5)) for _ in range(5)]
        maps[2] = None  # an unlabelled row
        labels = pd.Series(maps, name="t", dtype=object)
        return fitted(kind, labels), labels
    raise AssertionError(kind)


KINDS = [
    "regression",
    "regression_log",
    "binary",
    "binary_int",
    "binary_bool",
    "multiclass_str",
    "multiclass_int",
    "multilabel",
    "multilabel_wide",
    "count",
    "entire_space",
    "segmentation",
    "dense_regression",
]


def test_every_registered_kind_has_its_shared_behaviour_cases() -> None:
    """The tests below run over ``KINDS``; a kind registered without a case there fails
    here rather than going untested."""
    assert {case(c)[0].kind for c in KINDS} == set(REGISTERED)


@pytest.mark.parametrize("kind", sorted(REGISTERED))
def test_a_kind_declares_a_direction_for_every_metric_it_reports(kind: str) -> None:
    task = next(t for t in (case(c)[0] for c in KINDS) if t.kind == kind)
    assert set(task.metric_names()) <= set(task.directions)
    assert set(task.headline) <= set(task.metric_names())
    assert task.score_metric in task.metric_names()
    for metric, higher in task.directions.items():
        assert higher_is_better(metric) is higher  # one direction per metric name


def test_several_label_columns_only_for_a_kind_that_reads_them() -> None:
    with pytest.raises(PolytaskError, match=r"'columns' .* a binary task takes one 'column'"):
        make_task("t", "binary", ["a", "b"], {})
    assert make_task("t", "multilabel", ["a", "b"], {}).columns == ["a", "b"]


def output_shape(task: Task, mask: torch.Tensor) -> tuple[int, ...]:
    """(N, outputs) per row, (N, outputs, H, W) for a per-pixel task."""
    return (len(mask), task.raw_width, *(mask.shape[1:] if task.dense else ()))


def perfect_output(task: Task, target: torch.Tensor) -> np.ndarray:
    t = target.numpy()
    if task.kind == "regression":
        return t[:, None].astype(np.float32)
    if task.kind == "binary":
        return np.where(t[:, None] == 1, 8.0, -8.0)
    if task.kind == "entire_space":  # the product's logit, then the head's own
        return np.column_stack([np.where(t == 1, 8.0, -8.0), np.zeros_like(t)])
    if task.kind == "multiclass":
        return np.eye(task.output_size)[t] * 8.0
    if task.kind == "multilabel":
        return np.where(t == 1, 8.0, -8.0)
    if task.kind == "count":
        return np.log(np.maximum(t, 1e-9))[:, None]
    if task.kind == "segmentation":
        return np.moveaxis(np.eye(task.output_size)[t], -1, 1) * 8.0
    if task.kind == "dense_regression":
        return t[:, None].astype(np.float64)
    raise AssertionError(task.kind)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_without_labels_gives_zero_loss_and_finite_gradient(kind: str) -> None:
    task, labels = case(kind)
    target, mask = task.encode(labels)
    none = torch.zeros_like(mask)
    out = (5 * torch.randn(output_shape(task, mask))).requires_grad_(True)
    loss = task.loss(out, target, none)
    assert loss.item() == 0.0
    assert not torch.isnan(loss)
    loss.backward()
    assert out.grad is not None
    assert torch.isfinite(out.grad).all()
    assert torch.all(out.grad == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_metrics_without_labelled_rows_are_none(kind: str) -> None:
    task, labels = case(kind)
    target, mask = task.encode(labels)
    none = np.zeros_like(mask.numpy())
    out = np.zeros(output_shape(task, mask), dtype=np.float32)
    result = score([task], [torch.from_numpy(out)], [target], [torch.from_numpy(none)])[task.name]
    assert result["n"] == 0
    assert all(v is None for k, v in result.items() if k != "n"), result
    assert set(result) - {"n"}  # still names its metrics


@pytest.mark.parametrize("kind", KINDS)
def test_decode_of_a_perfect_output_gives_back_the_labels(kind: str) -> None:
    task, labels = case(kind)
    target, mask = task.encode(labels)
    decoded = task.decode(perfect_output(task, target))
    rows = mask.numpy().reshape(len(mask), -1).any(axis=1)
    if task.kind == "multilabel" and task.wide:
        for j, col in enumerate(task.columns):
            known = mask.numpy()[:, j]
            got = decoded[f"{task.name}_{col}"][known]
            assert got.tolist() == labels[col][known].astype(int).tolist()
            assert f"{task.name}_proba_{col}" in decoded
        return
    values = decoded[task.name]
    assert len(values) == len(labels)
    for i in np.flatnonzero(rows):
        raw = labels.iloc[i]
        got = values[i]
        if task.kind == "segmentation":
            np.testing.assert_array_equal(got, raw)
        elif task.kind == "dense_regression":
            np.testing.assert_allclose(got, raw, rtol=1e-5, atol=1e-5)
        elif task.kind == "regression":
            assert got == pytest.approx(raw, rel=1e-5, abs=1e-5)
        elif task.kind == "count":
            assert got == pytest.approx(raw, abs=1e-4)
        elif task.kind == "multilabel":
            want = {p.strip() for p in raw.split("|") if p.strip()}
            assert set(got.split("|")) == want
        else:
            assert got == raw
            assert type(got) is type(raw), (got, raw)  # strings stay strings, ints ints


def test_decode_probability_columns() -> None:
    task, labels = case("multiclass_str")
    rng = np.random.default_rng(0)
    out = rng.normal(size=(len(labels), 3))
    decoded = task.decode(out)
    probs = np.column_stack([decoded[f"t_proba_{c}"] for c in task.classes])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs, np.exp(out) / np.exp(out).sum(1, keepdims=True))
    assert decoded["t"].tolist() == [task.classes[i] for i in out.argmax(1)]

    btask, _ = case("binary")
    logits = np.array([[-1.0], [0.0], [2.0]])
    b = btask.decode(logits)
    np.testing.assert_allclose(b["t_proba"], 1 / (1 + np.exp(-logits[:, 0])))
    assert b["t"].tolist() == ["no", "yes", "yes"]


@pytest.mark.parametrize("kind", KINDS)
def test_state_round_trips_through_json(kind: str) -> None:
    task, labels = case(kind)
    state = json.loads(json.dumps(task.state(), allow_nan=False))
    fresh = make_task(task.name, task.kind, task.columns, task.options.model_dump())
    fresh.load_state(state)
    assert fresh.fitted
    assert fresh.output_size == task.output_size
    assert fresh.state() == task.state()
    t1, m1 = task.encode(labels)
    t2, m2 = fresh.encode(labels)
    assert torch.equal(t1, t2) and torch.equal(m1, m2)
    out = np.random.default_rng(1).normal(size=output_shape(task, m1)).astype(np.float32)
    o = torch.from_numpy(out)
    assert task.loss(o, t1, m1).item() == fresh.loss(o, t2, m2).item()
    d1, d2 = task.decode(out), fresh.decode(out)
    assert d1.keys() == d2.keys()
    for key in d1:
        np.testing.assert_array_equal(d1[key], d2[key])
    bias1, bias2 = task.initial_bias(), fresh.initial_bias()
    assert (bias1 is None) == (bias2 is None)
    if bias1 is not None:
        assert torch.allclose(bias1, bias2)
