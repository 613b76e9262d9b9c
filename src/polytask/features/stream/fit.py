"""Fitting the preprocessing in one pass over streamed training rows.

The result is an ordinary :class:`~polytask.features.preprocess.Preprocessor` (the same
state, saved the same way), so a streamed run predicts, serves and exports like any
other. What equals the in-memory fit and what approximates it:

- numeric mean and standard deviation: equal to rounding, for the imputed median used;
- vocabularies: exact counts, so the same categories pass ``min_category_count`` and
  ``max_categories`` (ties at the ``max_categories`` cut are broken by the category's
  text here, by pandas' sort order in memory);
- medians: of a uniform sample of ``sample_rows`` training rows (exact when the training
  split has no more rows): rank within ±ε of the middle, ε from
  :func:`~polytask.features.stream.stats.median_bound` (0.0098 for 100,000 rows, except
  with probability 1e-8);
- text tokenizers: trained on the texts of the same sample;
- multi-hot vocabularies: exact item counts, as for categoricals (ties at the
  ``max_categories`` cut broken by the item's text).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from polytask.errors import PolytaskError
from polytask.features.bins import quantile_edges
from polytask.features.multihot import MultiHotColumn, cell_items
from polytask.features.preprocess import (
    CategoricalColumn,
    NumericColumn,
    Preprocessor,
    embedding_dim,
)
from polytask.features.stream import arrow
from polytask.features.stream.stats import Moments, RowSample, ValueCounts
from polytask.features.text import TextColumn, TextOptions


@dataclass
class FitOptions:
    max_categories: int = 1000
    min_category_count: int = 1
    embedding_dim: int | None = None
    max_embedding_dim: int = 16
    text_options: TextOptions | None = None
    sample_rows: int = 100_000
    seed: int = 0
    #: hashed categoricals (``features.hash_buckets``): name -> buckets, no vocabulary
    hash_buckets: dict[str, int] = field(default_factory=dict)
    #: a multi-hot cell keeps its last this many items
    max_items: int = 50
    #: cyclical columns (type ``cyclical``): name -> period
    cyclical: dict[str, float] = field(default_factory=dict)
    #: quantile bins per plain numeric column (model.numeric_encoding piecewise)
    bins: int | None = None


#: the feature kinds a streamed table takes
STREAMED_KINDS = ("numeric", "boolean", "cyclical", "categorical", "text", "multi_hot")


@dataclass
class _Numeric:
    kind: str
    moments: Moments = field(default_factory=Moments)
    missing: int = 0


class FitPass:
    """Feed it every training row once (``add``), then ask for the ``preprocessor``."""

    def __init__(self, types: dict[str, str], options: FitOptions):
        image = [c for c, k in types.items() if k == "image"]
        if image:
            raise PolytaskError(
                f"image column '{image[0]}' cannot be streamed yet; train on a table that "
                "fits in memory (data.streaming: false)"
            )
        bad = [c for c, k in types.items() if k not in STREAMED_KINDS]
        if bad:
            raise PolytaskError(
                f"feature column '{bad[0]}' ({types[bad[0]]}) cannot be streamed yet; train on "
                "a table that fits in memory (data.streaming: false)"
            )
        self.types, self.options = types, options
        self.numeric = {
            c: _Numeric("boolean" if k == "boolean" else "numeric")
            for c, k in types.items()
            if k in ("numeric", "boolean", "cyclical")
        }
        self.counts = {c: ValueCounts() for c, k in types.items() if k == "categorical"}
        self.text = [c for c, k in types.items() if k == "text"]
        self.items = {c: Counter[str]() for c, k in types.items() if k == "multi_hot"}
        self.sample = RowSample(options.sample_rows, options.seed)
        self.rows = 0

    def add(self, table: pa.Table, positions: np.ndarray) -> None:
        """Fold in training rows (``positions``: their places in the whole table)."""
        self.rows += table.num_rows
        for name, acc in self.numeric.items():
            values = arrow.plain(table[name])
            parse = arrow.numeric if acc.kind == "numeric" else arrow.boolean
            arr = parse(values, name)
            present = arr[~np.isnan(arr)]
            acc.moments.add(present)
            acc.missing += arr.size - present.size
        for name, counts in self.counts.items():
            values = arrow.plain(table[name])
            if name in self.options.hash_buckets:
                arrow.check_ids(values, name)  # hashed: every row needs an ID, nothing counted
                continue
            counts.add(arrow.present_values(values))
        for name, items in self.items.items():
            cells = cell_items(arrow.plain(table[name]).to_pylist(), name, self.options.max_items)
            if name not in self.options.hash_buckets:
                items.update(chain.from_iterable(cells))
        sampled = [*self.numeric, *self.text]
        if sampled:
            self.sample.add(table.select(sampled), positions)

    def preprocessor(self) -> Preprocessor:
        if not self.types:
            raise PolytaskError(
                "no feature columns are left to learn from; check features.include / features.drop"
            )
        sample = self.sample.rows()
        numeric = [self._numeric(name, sample) for name in self.numeric]
        categorical = [self._categorical(name) for name in self.counts]
        text = [self._text(name, sample) for name in self.text]
        order = list(self.types)
        numeric.sort(key=lambda c: order.index(c.name))
        categorical.sort(key=lambda c: order.index(c.name))
        bags = [self._bag(name) for name in self.items]
        return Preprocessor(numeric=numeric, categorical=categorical, text=text, bags=bags)

    def _numeric(self, name: str, sample: pa.Table | None) -> NumericColumn:
        acc = self.numeric[name]
        period = self.options.cyclical.get(name)
        if not acc.moments.n:
            return NumericColumn(name, acc.kind, 0.0, 0.0, 1.0, bool(acc.missing), period)
        assert sample is not None
        parse = arrow.numeric if acc.kind == "numeric" else arrow.boolean
        values = parse(arrow.plain(sample[name]), name)
        median = float(np.median(values[~np.isnan(values)]))
        mean, std = acc.moments.filled(acc.missing, median)
        if not (np.isfinite(mean) and np.isfinite(std)):
            raise PolytaskError(
                f"feature column '{name}' has values too large to standardise; rescale the column"
            )
        std = std if std > 1e-12 else 1.0
        if period:
            mean, std = 0.0, 1.0
        col = NumericColumn(name, acc.kind, median, mean, std, bool(acc.missing), period)
        if self.options.bins and col.encodable:  # edges from the sample's quantiles
            filled = np.where(np.isnan(values), median, values)
            col.edges = quantile_edges((filled - mean) / std, self.options.bins)
        return col

    def _categorical(self, name: str) -> CategoricalColumn:
        o = self.options
        buckets = o.hash_buckets.get(name)
        if buckets:
            dim = o.embedding_dim or embedding_dim(buckets + 2, o.max_embedding_dim)
            return CategoricalColumn(name=name, vocab=[], dim=dim, buckets=buckets)
        values, counts = self.counts[name].result()
        by_key: dict[str, int] = {}
        for key, count in zip(arrow.canonical_keys(values), counts.tolist(), strict=True):
            by_key[key] = by_key.get(key, 0) + int(count)
        kept = sorted(
            ((k, c) for k, c in by_key.items() if c >= o.min_category_count),
            key=lambda kc: (-kc[1], kc[0]),
        )[: o.max_categories]
        vocab = sorted(k for k, _ in kept)
        dim = o.embedding_dim or embedding_dim(len(vocab) + 2, o.max_embedding_dim)
        return CategoricalColumn(name=name, vocab=vocab, dim=dim)

    def _bag(self, name: str) -> MultiHotColumn:
        """As :meth:`MultiHotColumn.fit`: items seen ``min_category_count`` times, at
        most ``max_categories``; none with hash buckets."""
        o = self.options
        buckets = o.hash_buckets.get(name)
        kept = sorted(
            ((k, c) for k, c in self.items[name].items() if c >= o.min_category_count),
            key=lambda kc: (-kc[1], kc[0]),
        )[: o.max_categories]
        vocab = [] if buckets else sorted(k for k, _ in kept)
        col = MultiHotColumn(name, vocab, 1, o.max_items, buckets)
        col.dim = o.embedding_dim or embedding_dim(col.cardinality, o.max_embedding_dim)
        return col

    def _text(self, name: str, sample: pa.Table | None) -> TextColumn:
        import pandas as pd  # the tokenizer trainer takes Python strings

        texts: list[Any] = [] if sample is None else arrow.plain(sample[name]).to_pylist()
        options = self.options.text_options or TextOptions()
        return TextColumn.fit(name, pd.Series(texts, dtype=object, name=name), options)
