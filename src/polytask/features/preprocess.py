"""Fitted preprocessing: raw table columns -> a float matrix, a category-code matrix and,
for text and image columns, one tensor per column (token ids, or images N x C x H x W).

Numeric columns get median imputation, a missing indicator (where training had gaps) and
standardisation (a cyclical column: sin and cos instead; for the piecewise encoding, also
quantile bin edges); booleans become 0/1 the same way; categorical columns get a vocabulary
with an unknown bucket (code 0) and a missing bucket (code 1). Everything is fitted on the
training split only and saved as plain JSON, so a run predicts on raw rows by itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from polytask.errors import PolytaskError, close_matches
from polytask.features.arrays import base_dir
from polytask.features.bins import quantile_edges
from polytask.features.hashing import bucket_codes, missing_id_error
from polytask.features.images import ImageColumn, fit_image, image_tensor
from polytask.features.multihot import MultiHotColumn
from polytask.features.numeric_block import NUMERIC_ROWS, NumericPlan
from polytask.features.parse import parse_boolean, parse_numeric
from polytask.features.text import TextColumn, TextOptions
from polytask.values import canonical_series, missing_mask

UNKNOWN, MISSING = 0, 1


@dataclass
class NumericColumn:
    name: str
    kind: str  # "numeric" or "boolean"
    median: float
    mean: float
    std: float
    indicator: bool
    #: a cyclical column's period: its value becomes sin and cos (features.cyclical)
    period: float | None = None
    #: quantile bin edges of the standardised values (model.numeric_encoding piecewise)
    edges: list[float] | None = None

    @property
    def slots(self) -> int:
        """Value columns in the numeric block (2 for a cyclical column's sin and cos)."""
        return 2 if self.period else 1

    @property
    def encodable(self) -> bool:
        """A plain number, which model.numeric_encoding encodes (booleans, cyclical
        columns and indicators go to the network as they are)."""
        return self.kind == "numeric" and not self.period


@dataclass
class CategoricalColumn:
    name: str
    vocab: list[str]
    dim: int
    #: hashed (``features.hash_buckets``): this many buckets and no vocabulary
    buckets: int | None = None

    @property
    def cardinality(self) -> int:
        # + unknown and missing buckets
        return (self.buckets if self.buckets else len(self.vocab)) + 2

    def index(self) -> dict[str, int]:
        """Category key -> code (built once, then cached: the records path reads it per
        request)."""
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = self.__dict__["_index"] = {k: c for c, k in enumerate(self.vocab, start=2)}
        return cached

    def codes(self, keys: np.ndarray, miss: np.ndarray) -> np.ndarray:
        """int64 codes of canonical keys (``miss``: missing cells)."""
        if self.buckets:
            if miss.any():
                raise missing_id_error(self.name, int(np.flatnonzero(miss)[0]))
            return bucket_codes(keys, self.buckets)
        mapped = pd.Series(keys).map(self.index()).fillna(UNKNOWN)
        codes = mapped.to_numpy(dtype=np.int64, copy=True)
        codes[miss] = MISSING
        return codes


@dataclass
class FeatureTensors:
    numeric: torch.Tensor  # (N, D) float32
    categorical: torch.Tensor  # (N, C) int64
    #: text columns (token ids (N, L); a frozen encoder's cached vectors (N, E) while
    #: training), then image columns
    #: (N, C, H, W), by column name in the preprocessor's order
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.numeric.shape[0]

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        """The network's positional inputs: ``net(*features.inputs)``."""
        return (self.numeric, self.categorical, *self.extra.values())

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, ...]:
        return tuple(x[start:stop] for x in self.inputs)


def embedding_dim(cardinality: int, cap: int) -> int:
    """A common rule of thumb: 1.6 * n^0.56, capped."""
    return max(1, min(cap, round(1.6 * cardinality**0.56)))


def _fit_numeric(
    name: str, values: pd.Series, kind: str, period: float | None = None, bins: int | None = None
) -> NumericColumn:
    """A numeric or boolean column's imputation (median) and standardisation (mean, std
    of the imputed values), and whether it needs a missing-value indicator; a cyclical
    column (``period``) is not standardised; with ``bins``, a plain numeric column's
    quantile bin edges in standardised units."""
    arr = parse_numeric(values, name) if kind == "numeric" else parse_boolean(values, name)
    present = arr[~np.isnan(arr)]
    filled = arr
    if present.size:
        median = float(np.median(present))
        filled = np.where(np.isnan(arr), median, arr)
        mean, std = float(filled.mean()), float(filled.std())
    else:
        median, mean, std = 0.0, 0.0, 1.0
    if period:
        mean, std = 0.0, 1.0
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise PolytaskError(
            f"feature column '{name}' has values too large to standardise "
            f"(largest {np.nanmax(np.abs(arr)):.3g}); rescale the column"
        )
    col = NumericColumn(
        name=name,
        kind=kind,
        median=median,
        mean=mean,
        std=std if std > 1e-12 and math.isfinite(std) else 1.0,
        indicator=bool(np.isnan(arr).any()),
        period=period,
    )
    if bins and col.encodable:
        col.edges = quantile_edges((filled - col.mean) / col.std, bins)
    return col


@dataclass(frozen=True)
class CategoryOptions:
    """How categorical and multi-hot columns are fitted (``features.*`` of the config)."""

    max_categories: int = 1000
    min_count: int = 1
    fixed_dim: int | None = None
    max_dim: int = 16
    #: hashed columns: name -> buckets
    hash_buckets: dict[str, int] = field(default_factory=dict)
    #: a multi-hot cell keeps its last this many items
    max_items: int = 50

    def dim(self, cardinality: int) -> int:
        return self.fixed_dim or embedding_dim(cardinality, self.max_dim)


def _fit_categorical(name: str, values: pd.Series, o: CategoryOptions) -> CategoricalColumn:
    """A categorical column's vocabulary (the most frequent values seen at least
    ``min_count`` times, at most ``max_categories``), or its hash buckets, and its
    embedding width."""
    miss = missing_mask(values)
    buckets = o.hash_buckets.get(name)
    if buckets:
        if miss.any():
            raise missing_id_error(name, int(np.flatnonzero(miss)[0]))
        return CategoricalColumn(name=name, vocab=[], dim=o.dim(buckets + 2), buckets=buckets)
    counts = pd.Series(canonical_series(values, miss)[~miss]).value_counts()
    counts = counts[counts >= o.min_count].iloc[: o.max_categories]
    vocab = sorted(str(k) for k in counts.index)
    return CategoricalColumn(name=name, vocab=vocab, dim=o.dim(len(vocab) + 2))


def _overflows(values: pd.Series) -> bool:
    try:
        values.to_numpy(dtype=np.float64, na_value=np.nan)
    except OverflowError:
        return True
    except (TypeError, ValueError):
        return False
    return False


def _holds_containers(values: pd.Series) -> bool:
    return bool(values.map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray))).any())


@dataclass
class Preprocessor:
    numeric: list[NumericColumn] = field(default_factory=list)
    categorical: list[CategoricalColumn] = field(default_factory=list)
    text: list[TextColumn] = field(default_factory=list)
    images: list[ImageColumn] = field(default_factory=list)
    #: multi-hot and sequence columns (:mod:`polytask.features.multihot`)
    bags: list[MultiHotColumn] = field(default_factory=list)

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
        text_options: TextOptions | None = None,
        hash_buckets: dict[str, int] | None = None,
        max_items: int = 50,
        cyclical: Mapping[str, float] | None = None,
        bins: int | None = None,
    ) -> Preprocessor:
        """``hash_buckets`` (column -> buckets) hashes those categorical and multi-hot
        columns instead of keeping a vocabulary; a multi-hot cell keeps its last
        ``max_items`` items; ``cyclical`` columns (type ``cyclical``, column -> period)
        become sin and cos; ``bins``: each plain numeric column's quantile bin edges."""
        periods = dict(cyclical or {})
        numeric: list[NumericColumn] = []
        categorical: list[CategoricalColumn] = []
        text: list[TextColumn] = []
        images: list[ImageColumn] = []
        bags: list[MultiHotColumn] = []
        o = CategoryOptions(
            max_categories,
            min_category_count,
            embedding_dim_fixed,
            max_embedding_dim,
            dict(hash_buckets or {}),
            max_items,
        )
        for name, kind in types.items():
            values = df[name]
            if kind == "text":
                text.append(TextColumn.fit(name, values, text_options or TextOptions()))
                continue
            if kind == "image":
                images.append(fit_image(values, base_dir(df)))
                continue
            if kind in ("numeric", "boolean", "cyclical"):
                period = periods.get(name) if kind == "cyclical" else None
                if kind == "cyclical" and period is None:
                    raise PolytaskError(f"feature column '{name}': cyclical without a period")
                plain = "boolean" if kind == "boolean" else "numeric"
                numeric.append(_fit_numeric(name, values, plain, period, bins))
            elif kind == "categorical":
                categorical.append(_fit_categorical(name, values, o))
            elif kind == "multi_hot":
                limits = (o.min_count, o.max_categories)
                buckets = o.hash_buckets.get(name)
                bags.append(MultiHotColumn.fit(values, name, limits, max_items, buckets, o.dim))
            else:
                raise PolytaskError(f"feature column '{name}': unsupported type '{kind}'")
        if not (numeric or categorical or text or images or bags):
            raise PolytaskError(
                "no feature columns are left to learn from; check features.include / features.drop"
            )
        return cls(numeric, categorical, text, images, bags)

    # -- applying --------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        columns: list[Any] = [*self.numeric, *self.categorical, *self.text, *self.images]
        columns += self.bags
        return [c.name for c in columns]

    @property
    def numeric_width(self) -> int:
        return sum(c.slots + c.indicator for c in self.numeric)

    def encodable_slots(self) -> list[tuple[int, list[float] | None]]:
        """The numeric block's plain-number slots with their bin edges (if fitted)."""
        slots, at = [], 0
        for col in self.numeric:
            if col.encodable:
                slots.append((at, col.edges))
            at += col.slots
        return slots

    def check_columns(self, df: pd.DataFrame) -> None:
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            name = missing[0]
            # a near miss only among the columns the model does not know: a close name
            # that is another of its features is a different column, not a typo
            hint = close_matches(name, [c for c in df.columns if c not in self.columns])
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
        except OverflowError:
            bad = next((c.name for c in self.numeric if _overflows(df[c.name])), None)
            where = f"feature column '{bad}'" if bad else "a numeric feature column"
            raise PolytaskError(
                f"{where} holds a number too large for a float; fix or rescale those values"
            ) from None
        except (TypeError, ValueError) as err:
            if isinstance(err, PolytaskError):
                raise
            plain = [c for c in self.columns if c not in {b.name for b in self.bags}]
            bad = next((c for c in plain if _holds_containers(df[c])), None)
            where = f"feature column '{bad}'" if bad else "a feature column"
            raise PolytaskError(
                f"{where} holds values that are not numbers or text ({type(err).__name__}); "
                "give it plain values"
            ) from None

    def numeric_block(self, parsed: list[np.ndarray], n: int) -> np.ndarray:
        """(N, numeric_width) float32 from each numeric column's parsed float64 values
        (NaN: missing): imputed, standardised, clipped (a cyclical column: its sin and
        cos), then the missing indicators.
        Shared by the DataFrame, records and streamed paths; all plain columns at once,
        equal bit for bit to one at a time (features.numeric_block)."""
        num = np.empty((n, self.numeric_width), dtype=np.float32)
        if not self.numeric:
            return num
        plan = self._numeric_plan()
        for start in range(0, max(n, 1), NUMERIC_ROWS):
            stop = min(n, start + NUMERIC_ROWS)
            block = parsed if n <= NUMERIC_ROWS else [arr[start:stop] for arr in parsed]
            values = np.array(block, dtype=np.float64).reshape(len(parsed), stop - start).T
            plan.fill(values, num[start:stop])
        return num

    def _numeric_plan(self) -> NumericPlan:
        """The numeric columns' plan, kept while they equal the columns it was made of."""
        columns = tuple(self.numeric)
        if self.__dict__.get("_plan", (None,))[0] != columns:
            self.__dict__["_plan"] = (columns, NumericPlan.of(columns))
        return cast(NumericPlan, self.__dict__["_plan"][1])

    def _transform(self, df: pd.DataFrame) -> FeatureTensors:
        n = len(df)
        num = self.numeric_block(
            [
                (parse_numeric if c.kind == "numeric" else parse_boolean)(df[c.name], c.name)
                for c in self.numeric
            ],
            n,
        )
        cat = np.empty((n, len(self.categorical)), dtype=np.int64)
        for i, ccol in enumerate(self.categorical):
            values = df[ccol.name]
            miss = missing_mask(values)
            cat[:, i] = ccol.codes(canonical_series(values, miss), miss)
        extra: dict[str, torch.Tensor] = {}
        for tcol in self.text:
            extra[tcol.name] = torch.from_numpy(tcol.transform(df[tcol.name]))
        for icol in self.images:
            extra[icol.name] = torch.from_numpy(image_tensor(icol, df[icol.name], base_dir(df)))
        for bag in self.bags:
            extra[bag.name] = torch.from_numpy(bag.codes(df[bag.name]))
        return FeatureTensors(torch.from_numpy(num), torch.from_numpy(cat), extra)

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self, files: dict[str, str] | None = None) -> dict[str, Any]:
        """Plain data; with ``files``, documents that are files of their own in a run (a
        pretrained model's ``tokenizer.json``) go there by file name."""
        return {
            "numeric": [asdict(c) for c in self.numeric],
            "categorical": [asdict(c) for c in self.categorical],
            "text": [c.to_dict(files) for c in self.text],
            "images": [asdict(c) for c in self.images],
            "bags": [asdict(c) for c in self.bags],
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], files: Mapping[str, str] | None = None
    ) -> Preprocessor:
        return cls(
            numeric=[NumericColumn(**c) for c in data["numeric"]],
            categorical=[CategoricalColumn(**c) for c in data["categorical"]],
            text=[TextColumn.from_dict(c, files) for c in data.get("text", [])],
            images=[ImageColumn(**c) for c in data.get("images", [])],
            bags=[MultiHotColumn(**c) for c in data.get("bags", [])],
        )
