"""In-memory batching by slicing: no per-sample Dataset or collate on the hot path.

Each epoch gathers every tensor once in shuffled order; batches are then views (slices)
of those tensors, all made in one ``split`` per tensor, which costs next to nothing per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from polytask.features.preprocess import FeatureTensors


@dataclass
class Batch:
    numeric: torch.Tensor
    categorical: torch.Tensor
    targets: list[torch.Tensor]
    #: per task: bool mask of labelled rows, or None when every row is labelled
    masks: list[torch.Tensor | None]
    #: text and image inputs, in the preprocessor's order
    extra: tuple[torch.Tensor, ...] = ()

    def __len__(self) -> int:
        return self.numeric.shape[0]

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        """The network's positional inputs: ``net.forward_list(*batch.inputs)``."""
        return (self.numeric, self.categorical, *self.extra)

    def rows(self, lo: int, hi: int) -> Batch:
        """Rows ``lo:hi`` (views)."""
        return Batch(
            self.numeric[lo:hi],
            self.categorical[lo:hi],
            [y[lo:hi] for y in self.targets],
            [None if m is None else m[lo:hi] for m in self.masks],
            tuple(x[lo:hi] for x in self.extra),
        )


def shard_bounds(rows: int, world: int) -> list[int]:
    """Row offsets of each rank's contiguous shard (sizes differ by at most one)."""
    return [rows * r // world for r in range(world + 1)]


def _batches_with_any(mask: torch.Tensor, ends: torch.Tensor) -> int:
    """Number of batches (ending at rows ``ends``) with at least one labelled row."""
    rows = mask if mask.ndim == 1 else mask.reshape(mask.shape[0], -1).any(dim=1)
    labelled_so_far = rows.cumsum(0)[ends]
    return int((labelled_so_far.diff(prepend=labelled_so_far[:1] * 0) > 0).sum())


@dataclass
class TensorTable:
    """Features and encoded targets of one split, aligned by row."""

    features: FeatureTensors
    targets: list[torch.Tensor]
    masks: list[torch.Tensor]
    #: per task, per-row sample weights (None: unweighted); empty: no task is weighted.
    #: A weighted task's batch mask is the float weight where labelled, 0 elsewhere
    weights: list[torch.Tensor | None] = field(default_factory=list)
    #: set by each ``batches()`` pass: per task, the batches holding at least one label
    batches_with_labels: list[int] = field(default_factory=list, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.features)

    def to(self, device: torch.device) -> TensorTable:
        f = self.features
        return TensorTable(
            FeatureTensors(
                f.numeric.to(device),
                f.categorical.to(device),
                {k: v.to(device) for k, v in f.extra.items()},
            ),
            [t.to(device) for t in self.targets],
            [m.to(device) for m in self.masks],
            [None if w is None else w.to(device) for w in self.weights],
        )

    def scoring_parts(
        self, device: torch.device
    ) -> list[tuple[TensorTable, list[int], tuple[torch.Tensor, ...]]]:
        """``(rows, their tasks, extra leading inputs of the net)`` to score each task on:
        here every task on all rows (a multi-source table has one part per source)."""
        return [(self, list(range(len(self.targets))), ())]

    def chunks(self) -> Iterator[TensorTable]:
        """The rows in parts to score them by: all at once (a streamed table reads a row
        group at a time)."""
        return iter([self])

    def batch_sizes(self, batch_size: int) -> list[int]:
        """Sizes of an epoch's batches; a last batch of one row joins the one before it
        (batch normalisation cannot train on a single row)."""
        n = len(self)
        sizes = [batch_size] * (n // batch_size)
        rest = n % batch_size
        if rest == 1 and sizes:
            sizes[-1] += 1
        elif rest:
            sizes.append(rest)
        return sizes

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        shuffle: bool = True,
        drop_full_masks: bool = True,
    ) -> Iterator[Batch]:
        """Yield batches; with ``drop_full_masks`` a task whose every row in this split is
        labelled gets ``mask=None`` (the loss's fast path)."""
        n = len(self)
        num, cat = self.features.numeric, self.features.categorical
        extra = list(self.features.extra.values())
        targets, given = self.targets, list(self.masks)
        full = [bool(m.all()) for m in given] if drop_full_masks else [False] * len(given)
        if self.weights:  # weighted tasks: the weight where labelled, never "every row"
            given = [
                m if w is None else m.to(w.dtype) * w.reshape(-1, *([1] * (m.ndim - 1)))
                for m, w in zip(given, self.weights, strict=True)
            ]
            full = [f and w is None for f, w in zip(full, self.weights, strict=True)]
        masks: list[torch.Tensor | None]
        if shuffle:
            perm = torch.randperm(n, generator=generator).to(num.device)
            num, cat = num[perm], cat[perm]
            extra = [x[perm] for x in extra]
            targets = [t[perm] for t in targets]
            masks = [None if f else m[perm] for m, f in zip(given, full, strict=True)]
        else:
            masks = [None if f else m for m, f in zip(given, full, strict=True)]
        if n == 0:
            return
        # all of an epoch's views in one call per tensor: cheaper than slicing every step
        sizes = self.batch_sizes(batch_size)
        # how many of this epoch's batches hold at least one label of each task (for
        # per-task mean losses): one cumulative sum per partly labelled task
        ends = torch.tensor(sizes, device=num.device).cumsum(0) - 1
        self.batches_with_labels = [
            len(sizes) if m is None else _batches_with_any(m, ends) for m in masks
        ]
        views = [x.split(sizes) for x in (num, cat, *targets)]
        extra_views = [x.split(sizes) for x in extra]
        mask_views = [None if m is None else m.split(sizes) for m in masks]
        for i, (x, c, *ys) in enumerate(zip(*views, strict=True)):
            yield Batch(
                x,
                c,
                ys,
                [None if m is None else m[i] for m in mask_views],
                tuple(e[i] for e in extra_views),
            )

    def rank_batches(
        self, batch_size: int, generator: torch.Generator | None, rank: int, world: int
    ) -> Iterator[tuple[Batch, list[int]]]:
        """Process ``rank``'s contiguous shard of every global batch (all processes
        shuffle alike, from the seed) with the shards' row bounds."""
        for batch in self.batches(batch_size, generator):
            bounds = shard_bounds(len(batch), world)
            yield batch.rows(bounds[rank], bounds[rank + 1]), bounds
