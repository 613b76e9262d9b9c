"""Multi-hot and sequence columns: each cell a set or sequence of categories, embedded
through an ``EmbeddingBag`` (the mean of its items' embeddings).

A cell is a list (a Parquet list column, or a Python list / array), text with ``|``
between items (``"sports|news"``), a single number or text (one item), or missing (no
items). A sequence keeps its last ``max_items`` items (the most recent). Items get a
vocabulary as categoricals do (code 1: unknown, 0: padding), or, with ``hash_buckets``,
a stable hashed bucket. The column becomes an (N, L) int64 matrix of codes, 0-padded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from polytask.errors import PolytaskError
from polytask.features.hashing import bucket_codes
from polytask.values import canonical

PAD, UNKNOWN_ITEM = 0, 1
SCALARS = (str, int, float, bool, np.integer, np.floating, np.bool_)


@dataclass
class MultiHotColumn:
    name: str
    vocab: list[str]
    dim: int
    max_items: int = 50
    #: hashed items: this many buckets and no vocabulary
    buckets: int | None = None

    @property
    def cardinality(self) -> int:
        return (self.buckets if self.buckets else len(self.vocab)) + 2

    @classmethod
    def fit(
        cls,
        values: Iterable[Any],
        name: str,
        limits: tuple[int, int],
        max_items: int,
        buckets: int | None,
        dim: Callable[[int], int],
    ) -> MultiHotColumn:
        """The vocabulary: items seen at least ``limits[0]`` times (each occurrence
        counts), at most ``limits[1]`` of them; none with ``buckets``. ``dim`` maps the
        cardinality to the embedding width."""
        min_count, max_categories = limits
        cells = cell_items(values, name, max_items)
        vocab: list[str] = []
        if not buckets:
            counts = pd.Series(list(chain.from_iterable(cells)), dtype=object).value_counts()
            counts = counts[counts >= min_count].iloc[:max_categories]
            vocab = sorted(str(k) for k in counts.index)
        col = cls(name=name, vocab=vocab, dim=1, max_items=max_items, buckets=buckets)
        col.dim = dim(col.cardinality)
        return col

    def codes(self, values: Iterable[Any]) -> np.ndarray:
        """(N, L) int64 item codes, 0-padded on the right; L is the longest cell (>= 1)."""
        cells = cell_items(values, self.name, self.max_items)
        lengths = np.fromiter((len(c) for c in cells), dtype=np.int64, count=len(cells))
        flat = list(chain.from_iterable(cells))
        if self.buckets:
            items = bucket_codes(flat, self.buckets) if flat else np.zeros(0, np.int64)
        else:
            index = {k: c for c, k in enumerate(self.vocab, start=2)}
            items = np.fromiter((index.get(k, UNKNOWN_ITEM) for k in flat), np.int64, len(flat))
        width = max(int(lengths.max()) if len(cells) else 0, 1)
        out = np.zeros((len(cells), width), dtype=np.int64)
        rows = np.repeat(np.arange(len(cells)), lengths)
        starts = np.cumsum(lengths) - lengths
        out[rows, np.arange(len(flat)) - np.repeat(starts, lengths)] = items
        return out


def _is_missing(cell: Any) -> bool:
    if cell is None:
        return True
    if isinstance(cell, float | np.floating):
        return bool(np.isnan(cell))
    return False


def _one_cell(cell: Any, name: str, row: int, longest: int) -> list[str]:
    if _is_missing(cell):
        return []
    if isinstance(cell, str):
        items: Sequence[Any] = cell.split("|")
    elif isinstance(cell, list | tuple | np.ndarray):
        items = list(cell)
    elif isinstance(cell, SCALARS):
        items = [cell]
    else:
        raise _bad_cell(name, row, type(cell).__name__)
    keys: list[str] = []
    for item in items:
        if not isinstance(item, SCALARS) or _is_missing(item):
            if _is_missing(item):
                continue  # a null inside a list is no item
            raise _bad_cell(name, row, f"a list holding {type(item).__name__}")
        key = canonical(item)
        if key:
            keys.append(key)
    return keys[-longest:]


def _bad_cell(name: str, row: int, got: str) -> PolytaskError:
    return PolytaskError(
        f"multi-hot feature column '{name}' row {row} holds {got}; a cell is a list of "
        "text or numbers, text with '|' between items, or empty"
    )


def cell_items(values: Iterable[Any], name: str, longest: int) -> list[list[str]]:
    """Each cell's item keys (canonical text), the last ``longest`` of them."""
    cells = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values
    return [_one_cell(cell, name, row, longest) for row, cell in enumerate(cells)]


def holds_lists(values: pd.Series, sample: int = 20) -> bool:
    """True when the present cells are lists or arrays of scalars (type inference)."""
    present = [v for v in values.iloc[: sample * 5] if not _is_missing(v)][:sample]
    return bool(present) and all(
        isinstance(v, list | tuple) or (isinstance(v, np.ndarray) and v.ndim == 1) for v in present
    )
