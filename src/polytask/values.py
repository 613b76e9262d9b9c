"""Small helpers for raw cell values shared by features and tasks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

TRUE_WORDS = frozenset({"1", "true", "yes", "t", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "f", "n"})


def is_text_dtype(dtype: Any) -> bool:
    return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)


def missing_mask(values: pd.Series) -> np.ndarray:
    """True where a cell is missing: NaN/None, or an empty/whitespace-only string."""
    miss = values.isna().to_numpy(dtype=bool)
    if is_text_dtype(values.dtype):
        stripped = values.astype("string").str.strip()
        miss = miss | (stripped == "").fillna(True).to_numpy(dtype=bool)
    return miss


def to_python(value: Any) -> Any:
    """A numpy/pandas scalar as a plain JSON-able Python value; integral floats as int."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def canonical(value: Any) -> str:
    """A value's identity as text: 1, 1.0, '1' and ' 1 ' are the same."""
    value = to_python(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value).strip()


def canonical_series(values: pd.Series, miss: np.ndarray) -> np.ndarray:
    """canonical() of each present cell (vectorised over unique values); "" where missing."""
    present = values[~miss]
    mapping = {u: canonical(u) for u in pd.unique(present)}
    keys = np.full(len(values), "", dtype=object)
    keys[~miss] = present.map(mapping).to_numpy(dtype=object)
    return keys
