"""A streamed split as the trainer reads it: the same interface as an in-memory
:class:`~polytask.features.batches.TensorTable` (``len``, ``batch_sizes``, ``batches``,
``rank_batches``, ``batches_with_labels``, ``to``), so one training loop serves both.

Each epoch reads this process's row groups in a new order (drawn from the trainer's
generator, so a resumed epoch replays the same order), encodes them on a background
thread, mixes the rows of about ``shuffle_rows`` rows at a time and cuts the batches.
Under torchrun each process owns a fixed share of the row groups (balanced by rows), and
all processes take the same number of steps: a process's rows are cut into that many
nearly equal local batches, so every training row is seen once per epoch across the
processes and the local batches add up to about ``batch_size``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch

from polytask.features.batches import Batch, shard_bounds
from polytask.features.preprocess import FeatureTensors
from polytask.features.stream.files import ParquetSource, Piece
from polytask.features.stream.prefetch import prefetch


@dataclass
class Chunk:
    """Encoded rows: features, every task's targets and masks, and where a task has
    sample weights, per task its weights (None: unweighted; empty: no task is)."""

    features: FeatureTensors
    targets: list[torch.Tensor]
    masks: list[torch.Tensor]
    weights: list[torch.Tensor | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.features)

    def tensors(self) -> list[torch.Tensor]:
        f = self.features
        given = [w for w in self.weights if w is not None]
        return [f.numeric, f.categorical, *f.extra.values(), *self.targets, *self.masks, *given]

    def with_tensors(self, ts: list[torch.Tensor]) -> Chunk:
        keys = list(self.features.extra)
        n_extra, n_tasks = len(keys), len(self.targets)
        extra = dict(zip(keys, ts[2 : 2 + n_extra], strict=True))
        rest = ts[2 + n_extra :]
        given = iter(rest[2 * n_tasks :])
        weights = [None if w is None else next(given) for w in self.weights]
        return Chunk(
            FeatureTensors(ts[0], ts[1], extra),
            rest[:n_tasks],
            rest[n_tasks : 2 * n_tasks],
            weights,
        )


def concat(chunks: list[Chunk]) -> Chunk:
    if len(chunks) == 1:
        return chunks[0]
    parts = [c.tensors() for c in chunks]
    return chunks[0].with_tensors([torch.cat(ts) for ts in zip(*parts, strict=True)])


@dataclass(frozen=True)
class SplitRows:
    """Which rows of which row groups a split reads: ``rows[i]`` of ``pieces[i]``;
    ``select`` gives the rows of a read piece that belong to the split (None: all)."""

    source: ParquetSource
    columns: list[str]
    pieces: list[Piece]
    rows: list[int]
    select: Callable[[Piece, pa.Table], np.ndarray] | None = None


def even_sizes(rows: int, steps: int) -> list[int]:
    """``rows`` cut into ``steps`` nearly equal parts (the first ones one larger)."""
    base, extra = divmod(rows, steps) if steps else (0, 0)
    return [base + (1 if i < extra else 0) for i in range(steps)]


def balanced_shares(rows: list[int], world: int) -> list[list[int]]:
    """Piece indices per process, largest first to the process with fewest rows."""
    shares: list[list[int]] = [[] for _ in range(world)]
    totals = [0] * world
    for i in sorted(range(len(rows)), key=lambda i: (-rows[i], i)):
        r = totals.index(min(totals))
        shares[r].append(i)
        totals[r] += rows[i]
    return [sorted(s) for s in shares]


class StreamingTable:
    """One split, streamed from Parquet row groups and encoded by ``encode``."""

    def __init__(
        self,
        split: SplitRows,
        encode: Callable[[pa.Table], Chunk],
        rank: int = 0,
        world: int = 1,
        shuffle_rows: int = 262_144,
        prefetch_depth: int = 4,
        device: torch.device | None = None,
        n_tasks: int = 0,
    ):
        self.split, self.encode = split, encode
        #: how many tasks each chunk holds targets for
        self.n_tasks = n_tasks
        self.rank, self.world = rank, world
        self.shuffle_rows, self.prefetch_depth = shuffle_rows, prefetch_depth
        self.device = device or torch.device("cpu")
        self.shares = balanced_shares(split.rows, world)
        self.rank_rows = [sum(split.rows[i] for i in s) for s in self.shares]
        #: set by each ``batches()`` pass: per task, the batches holding at least one label
        self.batches_with_labels: list[int] = []

    def __len__(self) -> int:
        return sum(self.split.rows)

    def scoring_parts(
        self, device: torch.device
    ) -> list[tuple[StreamingTable, list[int], tuple[torch.Tensor, ...]]]:
        """Every task on every row, read chunk by chunk (:meth:`chunks`)."""
        return [(self, list(range(self.n_tasks)), ())]

    def to(self, device: torch.device) -> StreamingTable:
        moved = StreamingTable(
            self.split,
            self.encode,
            self.rank,
            self.world,
            self.shuffle_rows,
            self.prefetch_depth,
            device,
            self.n_tasks,
        )
        return moved

    # -- the epoch's plan ----------------------------------------------------------------
    def _plan(self, batch_size: int) -> list[list[int]]:
        """Every process's local batch sizes, one list per process, equally long."""
        local = np.diff(shard_bounds(batch_size, self.world))
        steps = max(
            (-(-n // max(int(b), 1)) for n, b in zip(self.rank_rows, local, strict=True)),
            default=0,
        )
        return [even_sizes(n, steps) for n in self.rank_rows]

    def batch_sizes(self, batch_size: int) -> list[int]:
        """This process's batch sizes in an epoch (as many for every process)."""
        return self._plan(batch_size)[self.rank]

    # -- reading -------------------------------------------------------------------------
    def _read(self, index: int) -> Chunk:
        s = self.split
        piece = s.pieces[index]
        table = s.source.read(piece, s.columns)
        if s.select is not None:
            table = table.filter(pa.array(s.select(piece, table)))
        return self.encode(table)

    def chunks(self) -> Iterator[Chunk]:
        """Every row of the split in file order, a row group at a time (read ahead)."""
        order = [i for i, n in enumerate(self.split.rows) if n]
        return prefetch(lambda: (self._read(i) for i in order), self.prefetch_depth)

    def _windows(self, order: list[int], rng: np.random.Generator | None) -> Iterator[Chunk]:
        """The pieces in ``order``, in windows of at least ``shuffle_rows`` rows whose
        rows are permuted (when ``rng`` is given)."""
        buffer: list[Chunk] = []
        held = 0
        for i in order:
            chunk = self._read(i)
            buffer.append(chunk)
            held += len(chunk)
            if held >= self.shuffle_rows:
                yield _mixed(concat(buffer), rng)
                buffer, held = [], 0
        if buffer:
            yield _mixed(concat(buffer), rng)

    def _produce(
        self, order: list[int], rng: np.random.Generator | None, sizes: list[int]
    ) -> Iterator[tuple[Batch, list[bool]]]:
        steps = iter(sizes)
        pending: Chunk | None = None
        size = next(steps, None)
        for window in self._windows(order, rng):
            pending = window if pending is None else concat([pending, window])
            while size is not None and len(pending) >= size:
                ts = pending.tensors()
                yield self._batch(pending.with_tensors([t[:size] for t in ts]))
                pending = pending.with_tensors([t[size:] for t in ts])
                size = next(steps, None)
        while size is not None:  # a process with fewer rows than steps: empty batches
            yield self._batch(pending.with_tensors([t[:0] for t in pending.tensors()]))  # type: ignore[union-attr]
            size = next(steps, None)

    def _batch(self, chunk: Chunk) -> tuple[Batch, list[bool]]:
        moved = chunk.with_tensors([t.to(self.device) for t in chunk.tensors()])
        weights = moved.weights or [None] * len(moved.masks)
        masks: list[torch.Tensor | None] = [
            # a weighted task's mask: its weight where labelled, 0 elsewhere (as in memory)
            (None if bool(m.all()) else m) if w is None else m.to(w.dtype) * w
            for m, w in zip(moved.masks, weights, strict=True)
        ]
        labelled = [m is None or bool(m.any()) for m in masks]
        f = moved.features
        batch = Batch(f.numeric, f.categorical, moved.targets, masks, tuple(f.extra.values()))
        return batch, labelled

    def _epoch(
        self, batch_size: int, generator: torch.Generator | None, shuffle: bool
    ) -> Iterator[tuple[Batch, list[bool]]]:
        share = [i for i in self.shares[self.rank] if self.split.rows[i]]
        rng = None
        if shuffle:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
            rng = np.random.default_rng(seed)
            share = [share[i] for i in rng.permutation(len(share))]
        sizes = self.batch_sizes(batch_size)
        return prefetch(lambda: self._produce(share, rng, sizes), self.prefetch_depth)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
    ) -> Iterator[Batch]:
        """This process's batches of one epoch."""
        counts: list[int] | None = None
        for batch, labelled in self._epoch(batch_size, generator, shuffle):
            if counts is None:
                counts = [0] * len(labelled)
            counts = [c + int(x) for c, x in zip(counts, labelled, strict=True)]
            self.batches_with_labels = counts
            yield batch

    def rank_batches(
        self, batch_size: int, generator: torch.Generator | None, rank: int, world: int
    ) -> Iterator[tuple[Batch, list[int]]]:
        """This process's own batches with every process's row bounds in the step's
        global batch (this table reads only its own share: nothing to slice)."""
        assert (rank, world) == (self.rank, self.world), "the table was built for another rank"
        plan = self._plan(batch_size)
        for i, batch in enumerate(self.batches(batch_size, generator)):
            bounds = [0, *itertools.accumulate(p[i] for p in plan)]
            yield batch, bounds


def _mixed(chunk: Chunk, rng: np.random.Generator | None) -> Chunk:
    if rng is None:
        return chunk
    perm = torch.from_numpy(rng.permutation(len(chunk)))
    return chunk.with_tensors([t[perm] for t in chunk.tensors()])
