"""Parsing numeric label columns, shared by the regression and count kinds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polytask.errors import PolytaskError
from polytask.values import bad_cells, missing_mask


def parse_numeric_labels(task_name: str, kind: str, values: pd.Series) -> np.ndarray:
    """Float64 array with NaN where the label is missing; a clear error for text or inf."""
    miss = missing_mask(values)
    parsed = pd.to_numeric(values.where(~miss), errors="coerce")
    arr = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(arr) & ~miss
    if bad.any():
        raise PolytaskError(
            f"task '{task_name}': {kind} labels in column '{values.name}' must be numbers, "
            f"found {bad_cells(values, bad)}; clean the column or declare the task as "
            "multiclass"
        )
    if np.isinf(arr).any():
        raise PolytaskError(
            f"task '{task_name}': column '{values.name}' holds infinite labels; "
            "replace them with numbers or leave them empty (missing)"
        )
    return arr
