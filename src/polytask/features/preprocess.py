"""Fitted preprocessing: raw table columns -> a float matrix and a category-code matrix.

Numeric columns get median imputation, a missing indicator (where training had gaps) and
standardisation; booleans become 0/1 the same way; categorical columns get a vocabulary
with an unknown bucket (code 0) and a missing bucket (code 1). Everything is fitted on the
training split only and saved as plain JSON, so a run predicts on raw rows by itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from polytask.errors import PolytaskError, close_matches
from polytask.values import FALSE_WORDS, TRUE_WORDS, canonical_series, missing_mask

UNKNOWN, MISSING = 0, 1


@dataclass
class NumericColumn:
    name: str
    kind: str  # "numeric" or "boolean"
    median: float
    mean: float
    std: float
    indicator: bool


@dataclass
class CategoricalColumn:
    name: str
    vocab: list[str]
    dim: int

    @property
    def cardinality(self) -> int:
        return len(self.vocab) + 2  # + unknown and missing buckets


@dataclass
class FeatureTensors:
    numeric: torch.Tensor  # (N, D) float32
    categorical: torch.Tensor  # (N, C) int64

    def __len__(self) -> int:
        return self.numeric.shape[0]


def embedding_dim(cardinality: int, cap: int) -> int:
    """A common rule of thumb: 1.6 * n^0.56, capped."""
    return max(1, min(cap, round(1.6 * cardinality**0.56)))


def _parse_numeric(values: pd.Series, name: str) -> np.ndarray:
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
            shown = ", ".join(repr(v) for v in pd.unique(values[bad])[:3])
            raise PolytaskError(
                f"feature column '{name}' is numeric but holds {shown}; fix those cells "
                "or declare the column categorical"
            )
    arr = np.array(arr, dtype=np.float64, copy=True)
    arr[~np.isfinite(arr)] = np.nan  # inf is treated as missing
    return arr


def _parse_boolean(values: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        arr = _parse_numeric(values, name)
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


def _holds_containers(values: pd.Series) -> bool:
    return bool(values.map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray))).any())


@dataclass
class Preprocessor:
    numeric: list[NumericColumn] = field(default_factory=list)
    categorical: list[CategoricalColumn] = field(default_factory=list)

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        types: dict[str, str],
        max_categories: int = 1000,
        min_category_count: int = 1,
        embedding_dim_fixed: int | None = None,
        max_embedding_dim: int = 16,
    ) -> Preprocessor:
        numeric: list[NumericColumn] = []
        categorical: list[CategoricalColumn] = []
        for name, kind in types.items():
            values = df[name]
            if kind in ("numeric", "boolean"):
                arr = (
                    _parse_numeric(values, name)
                    if kind == "numeric"
                    else _parse_boolean(values, name)
                )
                present = arr[~np.isnan(arr)]
                if present.size:
                    median = float(np.median(present))
                    filled = np.where(np.isnan(arr), median, arr)
                    mean, std = float(filled.mean()), float(filled.std())
                else:
                    median, mean, std = 0.0, 0.0, 1.0
                if not (math.isfinite(mean) and math.isfinite(std)):
                    raise PolytaskError(
                        f"feature column '{name}' has values too large to standardise "
                        f"(largest {np.nanmax(np.abs(arr)):.3g}); rescale the column"
                    )
                numeric.append(
                    NumericColumn(
                        name=name,
                        kind=kind,
                        median=median,
                        mean=mean,
                        std=std if std > 1e-12 and math.isfinite(std) else 1.0,
                        indicator=bool(np.isnan(arr).any()),
                    )
                )
            elif kind == "categorical":
                miss = missing_mask(values)
                counts = pd.Series(canonical_series(values, miss)[~miss]).value_counts()
                counts = counts[counts >= min_category_count].iloc[:max_categories]
                vocab = sorted(str(k) for k in counts.index)
                card = len(vocab) + 2
                dim = embedding_dim_fixed or embedding_dim(card, max_embedding_dim)
                categorical.append(CategoricalColumn(name=name, vocab=vocab, dim=dim))
            else:
                raise PolytaskError(f"feature column '{name}': unsupported type '{kind}'")
        if not numeric and not categorical:
            raise PolytaskError(
                "no feature columns are left to learn from; check --features / --drop"
            )
        return cls(numeric=numeric, categorical=categorical)

    # -- applying --------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    @property
    def numeric_width(self) -> int:
        return len(self.numeric) + sum(c.indicator for c in self.numeric)

    def check_columns(self, df: pd.DataFrame) -> None:
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            name = missing[0]
            hint = close_matches(name, df.columns)
            near = f" (close: {', '.join(repr(h) for h in hint)})" if hint else ""
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise PolytaskError(
                f"feature column '{name}'{more} is missing from the data{near}; "
                "the model needs every feature it was trained on"
            )

    def transform(self, df: pd.DataFrame) -> FeatureTensors:
        self.check_columns(df)
        try:
            return self._transform(df)
        except (TypeError, ValueError) as err:
            if isinstance(err, PolytaskError):
                raise
            bad = next((c for c in self.columns if _holds_containers(df[c])), None)
            where = f"feature column '{bad}'" if bad else "a feature column"
            raise PolytaskError(
                f"{where} holds values that are not numbers or text ({type(err).__name__}); "
                "give it plain values"
            ) from None

    def _transform(self, df: pd.DataFrame) -> FeatureTensors:
        n = len(df)
        num = np.empty((n, self.numeric_width), dtype=np.float32)
        j = len(self.numeric)
        for i, col in enumerate(self.numeric):
            parse = _parse_numeric if col.kind == "numeric" else _parse_boolean
            arr = parse(df[col.name], col.name)
            miss = np.isnan(arr)
            num[:, i] = (np.where(miss, col.median, arr) - col.mean) / col.std
            if col.indicator:
                num[:, j] = miss
                j += 1
        cat = np.empty((n, len(self.categorical)), dtype=np.int64)
        for i, col in enumerate(self.categorical):
            values = df[col.name]
            miss = missing_mask(values)
            keys = pd.Series(canonical_series(values, miss))
            index = {k: c for c, k in enumerate(col.vocab, start=2)}
            codes = keys.map(index).fillna(UNKNOWN).to_numpy(dtype=np.int64, copy=True)
            codes[miss] = MISSING
            cat[:, i] = codes
        return FeatureTensors(torch.from_numpy(num), torch.from_numpy(cat))

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": [asdict(c) for c in self.numeric],
            "categorical": [asdict(c) for c in self.categorical],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        return cls(
            numeric=[NumericColumn(**c) for c in data["numeric"]],
            categorical=[CategoricalColumn(**c) for c in data["categorical"]],
        )
