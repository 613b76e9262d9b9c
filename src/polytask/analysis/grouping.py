"""Which tasks to train together: the partition of the tasks into G models that maximises
the affinity within groups (TAG's selection step, Fifty et al. 2021).

A task j in a group g gets the mean affinity onto it from the group's other tasks,
(1/(|g|−1)) Σ_{i∈g, i≠j} Z_i→j; a task alone gets 0 (nothing helps or hurts it). A
partition's score is the sum over tasks. TAG searches with branch and bound; with the
small task counts of tabular multi-task learning an exhaustive search over all set
partitions is exact and fast: polytask searches exhaustively up to ``MAX_TASKS`` tasks
(the number of partitions of 10 tasks into any number of groups is 115,975).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from polytask.errors import PolytaskError

MAX_TASKS = 10


@dataclass(frozen=True)
class Grouping:
    groups: list[list[str]]
    #: the total within-group affinity (higher is better)
    score: float

    def describe(self) -> str:
        return " | ".join(" + ".join(g) for g in self.groups)


def group_score(matrix: np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    """Σ over tasks of the mean affinity onto the task from its group's other tasks.
    Missing entries (NaN) count as 0."""
    z = np.nan_to_num(np.asarray(matrix, dtype=float))
    total = 0.0
    for g in groups:
        if len(g) < 2:
            continue
        idx = np.asarray(g)
        block = z[np.ix_(idx, idx)]
        inbound = block.sum(axis=0) - np.diag(block)  # Σ_{i≠j} Z_i→j per j
        total += float(inbound.sum()) / (len(g) - 1)
    return total


def partitions(n: int, k: int) -> Iterator[list[list[int]]]:
    """All partitions of 0..n-1 into exactly k non-empty blocks (each once)."""

    def rec(i: int, blocks: list[list[int]]) -> Iterator[list[list[int]]]:
        if n - i < k - len(blocks):
            return  # not enough items left to open the blocks still needed
        if i == n:
            if len(blocks) == k:
                yield [list(b) for b in blocks]
            return
        for b in blocks:
            b.append(i)
            yield from rec(i + 1, blocks)
            b.pop()
        if len(blocks) < k:
            blocks.append([i])
            yield from rec(i + 1, blocks)
            blocks.pop()

    if k < 1 or k > n:
        return
    yield from rec(0, [])


def recommend_groups(names: Sequence[str], matrix: np.ndarray, n_groups: int) -> Grouping:
    """The best partition of the tasks into ``n_groups`` models (fewer if there are fewer
    tasks). Ties go to the partition found first (tasks in their given order)."""
    n = len(names)
    if n_groups < 1:
        raise PolytaskError(f"the number of groups must be at least 1, got {n_groups}")
    if n > MAX_TASKS:
        raise PolytaskError(
            f"grouping searches all partitions exhaustively, up to {MAX_TASKS} tasks; this "
            f"run has {n}: recommend groups for a subset of the tasks"
        )
    z = np.asarray(matrix, dtype=float)
    if z.shape != (n, n):
        raise PolytaskError(f"affinity matrix has shape {z.shape}, expected ({n}, {n})")
    best: tuple[float, list[list[int]]] | None = None
    for p in partitions(n, min(n_groups, n)):
        s = group_score(z, p)
        if best is None or s > best[0] + 1e-15:
            best = (s, p)
    assert best is not None
    return Grouping([[names[i] for i in g] for g in best[1]], best[0])
