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


def bad_cells(values: pd.Series, bad: np.ndarray, shown: int = 3) -> str:
    """What a message says about the cells of ``values`` flagged by ``bad``: the first
    distinct values, how many cells and their first rows (by the frame's index, which
    for a file polytask read is the 0-based data row), e.g. "'n/a', 'x' (5 cells, rows
    4, 17, 20, ...)"."""
    n = int(np.count_nonzero(bad))
    distinct = pd.unique(values[bad])
    examples = ", ".join(repr(to_python(v)) for v in distinct[:shown])
    if len(distinct) > shown:
        examples += ", ..."
    rows = ", ".join(str(to_python(i)) for i in values.index[bad][:shown])
    if n > shown:
        rows += ", ..."
    return f"{examples} ({n} cell{'s' if n != 1 else ''}, row{'s' if n != 1 else ''} {rows})"
