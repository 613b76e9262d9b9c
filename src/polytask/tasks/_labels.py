"""Mapping raw class labels (of any type) to integer codes and back."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from polytask.values import canonical, canonical_series, missing_mask, to_python


def label_keys(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(canonical text of each label, missing mask); "" where missing."""
    miss = missing_mask(values)
    return canonical_series(values, miss), miss


def first_values(values: pd.Series, miss: np.ndarray) -> dict[str, Any]:
    """For each canonical key, the first raw value seen (what predictions give back)."""
    out: dict[str, Any] = {}
    for u in pd.unique(values[~miss]):
        v = to_python(u)
        out.setdefault(canonical(u), v.strip() if isinstance(v, str) else v)
    return out


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers first in numeric order, then text in lexical order."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def warn_unseen(task: str, labels: pd.Series, unknown: np.ndarray, expected: str) -> None:
    """One behaviour for every class kind: labels the model was not trained on are
    treated as unlabelled (not scored, not trained on), with a warning that names how
    many cells, which values and rows, and what the model knows."""
    import warnings

    from polytask.values import bad_cells

    warnings.warn(
        f"task '{task}': column '{labels.name}' has labels not seen in training: "
        f"{bad_cells(labels, unknown)}; they are treated as unlabelled (the model knows "
        f"{expected})",
        UserWarning,
        stacklevel=3,
    )
