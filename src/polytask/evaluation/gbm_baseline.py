"""A single-task gradient-boosting baseline (scikit-learn's HistGradientBoosting).

Used to put polytask's numbers next to the strongest common tabular baseline on the same
splits. One model per task, labelled rows only, default hyperparameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from polytask.tasks import Task
from polytask.values import is_text_dtype, missing_mask


def _prepare(frames: list[pd.DataFrame], columns: list[str]) -> tuple[list[np.ndarray], list[bool]]:
    """Float matrices; text columns become category codes (NaN where missing or unseen)."""
    out = [np.empty((len(f), len(columns))) for f in frames]
    is_cat = []
    for j, col in enumerate(columns):
        first = frames[0][col]
        cat = is_text_dtype(first.dtype)
        is_cat.append(cat)
        if cat:
            vocab = {v: i for i, v in enumerate(pd.unique(first[~missing_mask(first)]))}
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


def gbm_scores(
    tasks: list[Task], features: list[str], train: pd.DataFrame, test: pd.DataFrame, seed: int
) -> dict[str, dict[str, Any]]:
    """Test metrics of one HistGradientBoosting model per task, for the kinds that have a
    baseline (``Task.baseline_estimator``); each task fits and scores its own."""
    (x_train, x_test), is_cat = _prepare([train, test], features)
    result: dict[str, dict[str, Any]] = {}
    for task in tasks:
        model = task.baseline_estimator(is_cat, seed)
        if model is None:
            continue
        y_tr, m_tr = (v.numpy() for v in task.encode(task.labels_of(train)))
        y_te, m_te = (v.numpy() for v in task.encode(task.labels_of(test)))
        model.fit(x_train[m_tr], y_tr[m_tr])  # on the task's own (log, scaled) target
        result[task.name] = task.baseline_scores(model, x_test[m_te], y_te[m_te])
    return result
