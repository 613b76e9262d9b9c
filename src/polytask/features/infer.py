"""Inferring feature types from a table: numeric, categorical, boolean, free text or image."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from polytask.features.arrays import looks_like_array_paths
from polytask.features.multihot import holds_lists
from polytask.values import FALSE_WORDS, TRUE_WORDS, canonical_series, is_text_dtype, missing_mask

FeatureType = Literal["numeric", "categorical", "boolean", "text", "image", "multi_hot"]

#: a text column is free text when most values are distinct and long, with spaces
TEXT_MIN_MEAN_LENGTH = 30
TEXT_MIN_UNIQUE_RATIO = 0.5


def infer_type(values: pd.Series) -> FeatureType:
    if pd.api.types.is_bool_dtype(values.dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values.dtype):
        return "numeric"
    if not is_text_dtype(values.dtype) and not isinstance(values.dtype, pd.CategoricalDtype):
        return "image" if looks_like_array_paths(values) else "categorical"
    if pd.api.types.is_object_dtype(values.dtype) and holds_lists(values):
        return "multi_hot"
    if looks_like_array_paths(values):
        return "image"
    miss = missing_mask(values)
    present = values[~miss]
    if present.empty:
        return "numeric"
    keys = canonical_series(values, miss)[~miss]
    lowered = {str(k).lower() for k in pd.unique(keys)}
    if len(lowered) <= 2 and lowered <= (TRUE_WORDS | FALSE_WORDS) and not lowered <= {"0", "1"}:
        return "boolean"
    if isinstance(values.dtype, pd.CategoricalDtype):
        return "categorical"
    as_num = pd.to_numeric(present, errors="coerce")
    if as_num.notna().all():
        return "numeric"
    text = present.astype(str)
    unique_ratio = text.nunique() / len(text)
    if (
        unique_ratio >= TEXT_MIN_UNIQUE_RATIO
        and text.str.len().mean() >= TEXT_MIN_MEAN_LENGTH
        and text.str.contains(" ").mean() > 0.5
    ):
        return "text"
    return "categorical"


def looks_like_row_id(values: pd.Series) -> bool:
    """Integer column with one distinct value per row in increasing order (e.g. 1..n)."""
    if not pd.api.types.is_integer_dtype(values.dtype) or len(values) < 50:
        return False
    arr = values.to_numpy()
    return bool(np.all(np.diff(arr) > 0))
