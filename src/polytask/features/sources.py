"""Several data sources in one training run: each batch comes from one source, picked by
a sampler, and carries every task's targets (the other sources' tasks unlabelled, so
they sit the step out, as tasks without labels always do).

The sampler draws source s with probability proportional to n_s^(1/temperature):
temperature 1 is ``proportional`` (every row about once an epoch), a very large one is
``uniform``. An epoch is as many steps as the sources have batches together; a source
whose rows run out starts a new shuffled pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from polytask.features.batches import Batch, TensorTable


@dataclass
class SourceBatch(Batch):
    #: a 0-dim int64 tensor: which source the rows come from (the network's first input)
    source: torch.Tensor | None = None

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        return (self.source, *super().inputs)  # type: ignore[arg-type]


def source_weights(sizes: list[int], method: str, temperature: float) -> list[float]:
    if method == "uniform":
        raw = [1.0 for _ in sizes]
    else:
        power = 1.0 if method == "proportional" else 1.0 / temperature
        raw = [float(n) ** power if n else 0.0 for n in sizes]
    total = sum(raw)
    return [r / total for r in raw]


@dataclass
class MultiSourceTable:
    """One split of every source: ``tables[s]`` holds source s's rows with the targets
    and masks of all tasks in global task order."""

    tables: list[TensorTable]
    #: per source, the global indices of its own tasks
    task_index: list[list[int]]
    method: str = "proportional"
    temperature: float = 2.0
    batches_with_labels: list[int] = field(default_factory=list, init=False, repr=False)

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables)

    def to(self, device: torch.device) -> MultiSourceTable:
        return MultiSourceTable(
            [t.to(device) for t in self.tables], self.task_index, self.method, self.temperature
        )

    def scoring_parts(
        self, device: torch.device
    ) -> list[tuple[TensorTable, list[int], tuple[torch.Tensor, ...]]]:
        """Each task is run and scored on its own source's rows, the net told the source."""
        return [
            (part, own, (torch.tensor(s, device=device),))
            for s, (part, own) in enumerate(zip(self.tables, self.task_index, strict=True))
        ]

    def batch_sizes(self, batch_size: int) -> list[int]:
        return [s for t in self.tables for s in t.batch_sizes(batch_size)]

    def weights(self) -> list[float]:
        return source_weights([len(t) for t in self.tables], self.method, self.temperature)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
    ) -> Iterator[SourceBatch]:
        n_steps = len(self.batch_sizes(batch_size))
        probs = torch.tensor(self.weights(), dtype=torch.float64)
        order = torch.multinomial(probs, n_steps, replacement=True, generator=generator)
        passes: list[Iterator[Batch] | None] = [None] * len(self.tables)
        n_tasks = len(self.tables[0].targets) if self.tables else 0
        self.batches_with_labels = [0] * n_tasks
        ids = [torch.tensor(s, device=t.targets[0].device) for s, t in enumerate(self.tables)]
        for s in order.tolist():
            batch = None
            for _ in range(2):  # a finished pass starts a new one
                if passes[s] is None:
                    passes[s] = self.tables[s].batches(batch_size, generator, shuffle)
                batch = next(passes[s], None)  # type: ignore[arg-type]
                if batch is not None:
                    break
                passes[s] = None
            if batch is None:
                continue
            for t in self.task_index[s]:
                m = batch.masks[t]
                self.batches_with_labels[t] += int(m is None or bool(m.any()))
            yield SourceBatch(
                batch.numeric, batch.categorical, batch.targets, batch.masks, batch.extra, ids[s]
            )
