"""One pass of streaming statistics for fitting preprocessing on rows never held at once.

- :class:`Moments`: count, mean and sum of squared deviations, merged batch by batch
  (Chan, Golub and LeVeque 1979), so mean and variance equal a two-pass computation to
  rounding (tests: 1e-6 relative). The imputed column's moments follow exactly from the
  present values' moments, the missing count and the fill value (:meth:`Moments.filled`).
- :class:`RowSample`: a uniform sample of k rows without replacement, the k rows with the
  smallest hash of their position (bottom-k sampling): independent of how the rows are
  read or chunked. It gives the median (see :func:`median_bound`), the types of text
  columns, and the texts a tokenizer is trained on.
- :class:`ValueCounts`: exact counts of every value of a column (a vocabulary with counts),
  compacted as they grow, so the frequency cut-off equals the in-memory one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polytask.features.stream.splits import uniform

#: value counts kept uncompacted before they are merged
COMPACT_AT = 1 << 21


@dataclass
class Moments:
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: np.ndarray) -> None:
        """Fold in the present (finite) values ``x``."""
        k = int(x.size)
        if not k:
            return
        mu = float(x.mean())
        m2 = float(np.square(x - mu).sum())
        total = self.n + k
        delta = mu - self.mean
        self.mean += delta * k / total
        self.m2 += m2 + delta * delta * self.n * k / total
        self.n = total

    def filled(self, missing: int, fill: float) -> tuple[float, float]:
        """(mean, std) of the column once its ``missing`` cells hold ``fill``."""
        total = self.n + missing
        if not total:
            return 0.0, 1.0
        mean = (self.n * self.mean + missing * fill) / total
        m2 = self.m2 + self.n * (self.mean - mean) ** 2 + missing * (fill - mean) ** 2
        return mean, math.sqrt(max(m2, 0.0) / total)


def median_bound(sample_size: int, probability: float = 1e-8) -> float:
    """ε such that the sample median's rank among all n values is within n/2 ± ε·n
    except with ``probability`` (Hoeffding / DKW: P ≤ 2 exp(-2 m ε²) for m sampled values);
    m = 100,000 gives ε = 0.0098."""
    return math.sqrt(math.log(2 / probability) / (2 * max(sample_size, 1)))


@dataclass
class RowSample:
    """The k rows of smallest hash(position, seed): a uniform sample without replacement."""

    k: int
    seed: int
    table: pa.Table | None = None
    keys: np.ndarray = field(default_factory=lambda: np.empty(0))

    def add(self, table: pa.Table, positions: np.ndarray) -> None:
        keys = uniform(positions.astype(np.uint64), self.seed + 1)
        if self.table is not None and len(self.keys) >= self.k:
            take = np.flatnonzero(keys < self.keys.max())
            if not take.size:
                return
            table, keys, positions = table.take(take), keys[take], positions[take]
        table = table.append_column("__position__", pa.array(positions.astype(np.int64)))
        merged = table if self.table is None else pa.concat_tables([self.table, table])
        all_keys = keys if self.table is None else np.concatenate([self.keys, keys])
        if len(all_keys) > self.k:
            keep = np.argpartition(all_keys, self.k - 1)[: self.k]
            merged, all_keys = merged.take(keep), all_keys[keep]
        self.table, self.keys = merged, all_keys

    def rows(self) -> pa.Table | None:
        """The sample in the table's row order, without the position column."""
        if self.table is None:
            return None
        order = pc.sort_indices(self.table["__position__"])
        return self.table.take(order).drop_columns(["__position__"])


@dataclass
class ValueCounts:
    """Exact counts of a column's present values (keys: the values in their Arrow type)."""

    parts: list[pa.StructArray] = field(default_factory=list)
    pending: int = 0

    def add(self, values: pa.Array) -> None:
        if not len(values):
            return
        counted = pc.value_counts(values)
        self.parts.append(counted)
        self.pending += len(counted)
        if self.pending > COMPACT_AT and len(self.parts) > 1:
            self.parts = [self._merged()]
            self.pending = len(self.parts[0])

    def _merged(self) -> pa.StructArray:
        values = pa.concat_arrays([p.field("values") for p in self.parts])
        counts = pa.concat_arrays([p.field("counts") for p in self.parts])
        grouped = (
            pa.table({"values": values, "counts": counts})
            .group_by("values")
            .aggregate([("counts", "sum")])
        )
        return pa.StructArray.from_arrays(
            [grouped["values"].combine_chunks(), grouped["counts_sum"].combine_chunks()],
            names=["values", "counts"],
        )

    def result(self) -> tuple[pa.Array, np.ndarray]:
        """(distinct values, their counts)."""
        if not self.parts:
            return pa.array([], pa.string()), np.empty(0, dtype=np.int64)
        merged = self._merged()
        return merged.field("values"), merged.field("counts").to_numpy()
