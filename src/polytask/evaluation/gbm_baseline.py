"""A single-task gradient-boosting baseline (scikit-learn's HistGradientBoosting).

Used to put polytask's numbers next to the strongest common tabular baseline on the same
splits. One model per task, labelled rows only, default hyperparameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from polytask.tasks import Task
from polytask.values import is_text_dtype, missing_mask

#: HistGradientBoosting takes at most 255 categories (its bins) per column: the most
#: frequent keep their own, the rest share the last code
MAX_CODES = 255


def _vocabulary(first: pd.Series) -> dict[Any, int]:
    """Codes in order of appearance; past ``MAX_CODES`` categories, by frequency, the
    rarest beyond ``MAX_CODES - 1`` sharing the last code."""
    present = first[~missing_mask(first)]
    uniques = pd.unique(present)
    if len(uniques) <= MAX_CODES:
        return {v: i for i, v in enumerate(uniques)}
    counts = present.value_counts(sort=True)
    return {v: min(i, MAX_CODES - 1) for i, v in enumerate(counts.index)}


def _prepare(frames: list[pd.DataFrame], columns: list[str]) -> tuple[list[np.ndarray], list[bool]]:
    """Float matrices; text columns become category codes (NaN where missing or unseen)."""
    out = [np.empty((len(f), len(columns))) for f in frames]
    is_cat = []
    for j, col in enumerate(columns):
        first = frames[0][col]
        cat = is_text_dtype(first.dtype)
        is_cat.append(cat)
        vocab = _vocabulary(first) if cat else {}
        for f, arr in zip(frames, out, strict=True):
            values = f[col]
            if cat:
                codes = values.map(vocab).astype("float64")
                arr[:, j] = codes.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                arr[:, j] = pd.to_numeric(values, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
    return out, is_cat


def gbm_split_scores(
    tasks: list[Task],
    features: list[str],
    train: pd.DataFrame,
    evaluate: Mapping[str, pd.DataFrame],
    seed: int,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{split: {task: metrics}}`` of one HistGradientBoosting model per task (the kinds
    that have a baseline, ``Task.baseline_estimator``), fitted on ``train`` once and
    scored on each frame of ``evaluate``."""
    names = list(evaluate)
    matrices, is_cat = _prepare([train, *evaluate.values()], features)
    result: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    for task in tasks:
        model = task.baseline_estimator(is_cat, seed)
        if model is None:
            continue
        y_tr, m_tr = (v.numpy() for v in task.encode(task.labels_of(train)))
        model.fit(matrices[0][m_tr], y_tr[m_tr])  # on the task's own (log, scaled) target
        for name, x in zip(names, matrices[1:], strict=True):
            y, m = (v.numpy() for v in task.encode(task.labels_of(evaluate[name])))
            result[name][task.name] = task.baseline_scores(model, x[m], y[m])
    return result


def gbm_scores(
    tasks: list[Task], features: list[str], train: pd.DataFrame, test: pd.DataFrame, seed: int
) -> dict[str, dict[str, Any]]:
    """Test metrics of one HistGradientBoosting model per task (see
    :func:`gbm_split_scores`); each task fits and scores its own."""
    return gbm_split_scores(tasks, features, train, {"test": test}, seed)["test"]
