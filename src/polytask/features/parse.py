"""Parsing a numeric or boolean feature column to float64 (NaN: missing), with one clear
line naming the column where a cell is neither."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polytask.errors import PolytaskError
from polytask.values import FALSE_WORDS, TRUE_WORDS, bad_cells, canonical_series, missing_mask


def parse_numeric(values: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64").to_numpy(na_value=np.nan)
    if pd.api.types.is_numeric_dtype(values.dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        miss = missing_mask(values)
        arr = pd.to_numeric(values.where(~miss), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        bad = np.isnan(arr) & ~miss
        if bad.any():
            raise PolytaskError(
                f"feature column '{name}' is numeric but holds {bad_cells(values, bad)}; fix "
                "those cells or declare the column categorical"
            )
    arr = np.array(arr, dtype=np.float64, copy=True)
    arr[~np.isfinite(arr)] = np.nan  # inf is treated as missing
    return arr


def parse_boolean(values: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        arr = parse_numeric(values, name)
        ok = np.isnan(arr) | (arr == 0) | (arr == 1)
        if not ok.all():
            raise PolytaskError(
                f"boolean feature column '{name}' holds values other than 0/1; "
                "declare it numeric or fix the values"
            )
        return arr
    miss = missing_mask(values)
    keys = np.char.lower(canonical_series(values, miss).astype(str))
    arr = np.full(len(values), np.nan)
    arr[np.isin(keys, list(TRUE_WORDS))] = 1.0
    arr[np.isin(keys, list(FALSE_WORDS))] = 0.0
    bad = np.isnan(arr) & ~miss
    if bad.any():
        shown = ", ".join(repr(v) for v in pd.unique(values[bad])[:3])
        raise PolytaskError(
            f"boolean feature column '{name}' holds {shown}; use true/false, yes/no or 1/0, "
            "or declare the column categorical"
        )
    return arr
