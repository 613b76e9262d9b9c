"""The records path: a handful of rows encoded with numpy from the fitted preprocessing,
without building a DataFrame (``predict`` on a few rows, ``predict_records``, ``serve``).

Building a DataFrame and running pandas per column costs milliseconds, which is most of
a one-record prediction. Here each column is a plain list of Python values (JSON
scalars, lists for multi-hot columns). A column whose values are all of the plain kinds
below is encoded straight into the arrays ``Preprocessor.transform`` makes, by the same
rules; any other column (numbers sent as text, NumPy or pandas objects) goes through
``Preprocessor.transform``'s own function for that column on a one-column Series, so
the two paths give identical tensors either way (tests/test_records.py holds them to
that, per feature type, with missing values and unseen categories).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polytask.errors import PolytaskError
from polytask.features.hashing import bucket_codes, missing_id_error
from polytask.features.images import image_tensor
from polytask.features.preprocess import (
    MISSING,
    UNKNOWN,
    CategoricalColumn,
    FeatureTensors,
    NumericColumn,
    Preprocessor,
    parse_boolean,
    parse_numeric,
)
from polytask.values import canonical, canonical_series, missing_mask

#: integers beyond this lose digits in a float64 column, which pandas would make of them
#: next to a missing value: such a column takes the Series route
EXACT_INT = 2**53


def _is_number(v: Any) -> bool:
    return (type(v) is float) or (type(v) is int and -EXACT_INT < v < EXACT_INT)


def _numeric(col: NumericColumn, values: Sequence[Any]) -> np.ndarray:
    if col.kind == "numeric" and all(v is None or _is_number(v) for v in values):
        arr = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        arr[~np.isfinite(arr)] = np.nan  # inf is missing, as in parse_numeric
        return arr
    if col.kind == "boolean" and all(v is None or type(v) is bool for v in values):
        return np.array([math.nan if v is None else float(v) for v in values])
    series = pd.Series(list(values), name=col.name)
    parse = parse_numeric if col.kind == "numeric" else parse_boolean
    return parse(series, col.name)


def _plain_key(v: Any) -> str | None:
    """The canonical key of a plain categorical value; "" where it is missing; None
    where the value is not plain (then the column takes the Series route)."""
    if v is None:
        return ""
    t = type(v)
    if t is str:
        return v.strip()
    if t is bool or (t is int and -EXACT_INT < v < EXACT_INT):
        return canonical(v)
    if t is float:
        return "" if math.isnan(v) else canonical(v)
    return None


def _categorical(col: CategoricalColumn, values: Sequence[Any]) -> np.ndarray:
    maybe = [_plain_key(v) for v in values]
    if any(k is None for k in maybe):
        series = pd.Series(list(values), name=col.name)
        miss = missing_mask(series)
        return col.codes(canonical_series(series, miss), miss)
    keys = [k for k in maybe if k is not None]
    if col.buckets:
        if "" in keys:
            raise missing_id_error(col.name, keys.index(""))
        return bucket_codes(keys, col.buckets)
    index = col.index()
    return np.array([MISSING if k == "" else index.get(k, UNKNOWN) for k in keys], np.int64)


def encode_columns(pre: Preprocessor, columns: Mapping[str, Sequence[Any]]) -> FeatureTensors:
    """The feature tensors of rows given as ``{feature: [value per row]}`` (every feature
    of ``pre``); equal to ``pre.transform`` of the same rows as a DataFrame."""
    missing = [c for c in pre.columns if c not in columns]
    if missing:
        raise PolytaskError(
            f"feature column '{missing[0]}' is missing; the model needs every feature it "
            "was trained on"
        )
    n = len(columns[pre.columns[0]])
    num = pre.numeric_block([_numeric(c, columns[c.name]) for c in pre.numeric], n)
    cat = np.empty((n, len(pre.categorical)), dtype=np.int64)
    for i, ccol in enumerate(pre.categorical):
        cat[:, i] = _categorical(ccol, columns[ccol.name])
    extra: dict[str, torch.Tensor] = {}
    for tcol in pre.text:
        series = pd.Series(list(columns[tcol.name]), name=tcol.name, dtype=object)
        extra[tcol.name] = torch.from_numpy(tcol.transform(series))
    for icol in pre.images:
        cells = pd.Series(list(columns[icol.name]), name=icol.name, dtype=object)
        extra[icol.name] = torch.from_numpy(image_tensor(icol, cells, Path(".")))
    for bag in pre.bags:
        extra[bag.name] = torch.from_numpy(bag.codes(list(columns[bag.name])))
    return FeatureTensors(torch.from_numpy(num), torch.from_numpy(cat), extra)


def records_columns(records: Sequence[Mapping[str, Any]], names: list[str]) -> dict[str, list]:
    """Records (one mapping per row) as ``{feature: [value per row]}``."""
    try:
        return {c: [r[c] for r in records] for c in names}
    except KeyError as err:
        raise PolytaskError(
            f"feature '{err.args[0]}' is missing from a record; every record needs every "
            "feature the model was trained on (None for a missing value)"
        ) from None


__all__ = ["encode_columns", "records_columns"]
