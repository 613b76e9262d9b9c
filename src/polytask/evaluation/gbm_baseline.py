"""A single-task gradient-boosting baseline (scikit-learn's HistGradientBoosting).

Used to put polytask's numbers next to the strongest common tabular baseline on the same
splits. One model per task, labelled rows only, default hyperparameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, roc_auc_score

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
    """Headline test metrics of one HistGradientBoosting model per task."""
    (x_train, x_test), is_cat = _prepare([train, test], features)
    result: dict[str, dict[str, Any]] = {}
    for task in tasks:
        if task.kind not in ("binary", "regression", "multiclass", "count"):
            continue
        y_tr, m_tr = (v.numpy() for v in task.encode(task.labels_of(train)))
        y_te, m_te = (v.numpy() for v in task.encode(task.labels_of(test)))
        kw = {"categorical_features": is_cat, "random_state": seed}
        if task.kind in ("binary", "multiclass"):
            model = HistGradientBoostingClassifier(**kw).fit(x_train[m_tr], y_tr[m_tr])
            proba = model.predict_proba(x_test[m_te])
            if task.kind == "binary":
                result[task.name] = {"auroc": float(roc_auc_score(y_te[m_te], proba[:, 1]))}
            else:
                pred = model.classes_[proba.argmax(1)]
                result[task.name] = {
                    "accuracy": float(accuracy_score(y_te[m_te], pred)),
                    "macro_f1": float(f1_score(y_te[m_te], pred, average="macro")),
                }
        else:
            loss = "poisson" if task.kind == "count" else "squared_error"
            model = HistGradientBoostingRegressor(loss=loss, **kw)
            model.fit(x_train[m_tr], y_tr[m_tr])  # on the task's own (log, scaled) target
            raw = model.predict(x_test[m_te])
            if task.kind == "count":
                pred, true = raw, y_te[m_te]
            else:
                pred, true = task._inverse(raw), task._inverse(y_te[m_te])
            scores = {
                "mae": float(mean_absolute_error(true, pred)),
                "r2": float(r2_score(true, pred)),
            }
            if getattr(task, "log", False):
                scores["r2_log"] = float(r2_score(np.log1p(true), np.log1p(np.maximum(pred, 0))))
            result[task.name] = scores
    return result
