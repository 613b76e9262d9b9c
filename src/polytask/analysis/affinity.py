"""Inter-task affinity by lookahead (Fifty et al. 2021, "Efficiently Identifying Task
Groupings for Multi-Task Learning", TAG).

Every ``every`` steps, before the optimiser step on a batch, and for each task i with
labels in it: take one plain gradient step on the shared parameters with task i's loss
alone (θ_s' = θ_s − lr ∇_θs L_i, lr the optimiser's current rate, heads unchanged) and
measure every task j's loss on the same batch:

    Z_i→j = 1 − L_j(θ_s', θ_j) / L_j(θ_s, θ_j)

Z_i→j > 0: a step for task i lowered task j's loss (i helps j); < 0: it raised it. The
parameters are then restored bit for bit, the measurement runs in eval mode (no dropout
noise, no batch-norm statistics update, no random numbers drawn) and touches no ``.grad``,
so training goes exactly as it would without it. Each epoch's history line gets the
epoch's mean matrix under ``"affinity"`` with what measuring cost.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polytask.analysis.grouping import MAX_TASKS, Grouping, recommend_groups
from polytask.errors import PolytaskError
from polytask.training.callbacks import Callback
from polytask.training.steps import batch_losses, present_tasks

if TYPE_CHECKING:
    from polytask.features.batches import Batch
    from polytask.training.trainer import Trainer, TrainResult


class TaskAffinity(Callback):
    """Measure the lookahead affinity matrix every ``every`` optimiser steps."""

    def __init__(self, every: int = 10):
        if every < 1:
            raise PolytaskError(f"affinity is measured every N steps with N >= 1, got {every}")
        self.every = every
        self.names: list[str] = []
        #: seconds spent measuring over the whole run, and the run's training seconds
        self.seconds = 0.0
        self.train_seconds = 0.0
        self.measurements = 0

    # -- hooks -----------------------------------------------------------------------------
    def on_train_begin(self, trainer: Trainer) -> None:
        net = trainer.net
        self.names = list(trainer.names)
        self._loss_fns: list[Any] = [t.loss for t in trainer.tasks]
        self._shared: list[torch.Tensor] = [p for p in net.shared_parameters() if p.requires_grad]
        if not self._shared:
            raise PolytaskError(
                "task affinity needs shared layers, but the model has none (model.hidden is "
                "empty); add shared layers or switch affinity off"
            )
        assert trainer.optimizer is not None
        group_of = {
            id(p): g
            for g, group in enumerate(trainer.optimizer.param_groups)
            for p in group["params"]
        }
        self._groups = [group_of.get(id(p)) for p in self._shared]
        self._reset_epoch()

    def on_batch_begin(self, trainer: Trainer, step: int, batch: Batch) -> None:
        if (step - 1) % self.every:
            return
        t0 = time.perf_counter()
        self._measure(trainer, batch)
        self._epoch_seconds += time.perf_counter() - t0

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self._sums / self._counts
        matrix = {
            src: {
                dst: (None if self._counts[i, j] == 0 else float(f"{mean[i, j]:.6g}"))
                for j, dst in enumerate(self.names)
            }
            for i, src in enumerate(self.names)
        }
        epoch_seconds = float(record.get("seconds") or 0.0)
        record["affinity"] = {
            "matrix": matrix,
            "steps": self._epoch_steps,
            "every": self.every,
            "seconds": round(self._epoch_seconds, 4),
            "share": round(self._epoch_seconds / epoch_seconds, 4) if epoch_seconds > 0 else None,
        }
        self.seconds += self._epoch_seconds
        self._reset_epoch()

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        self.train_seconds = result.seconds

    @property
    def share(self) -> float | None:
        """Share of the training time spent measuring affinity."""
        return self.seconds / self.train_seconds if self.train_seconds > 0 else None

    # -- the measurement ---------------------------------------------------------------------
    def _reset_epoch(self) -> None:
        n = len(self.names)
        self._sums = np.zeros((n, n))
        self._counts = np.zeros((n, n))
        self._epoch_seconds = 0.0
        self._epoch_steps = 0

    def _lrs(self, trainer: Trainer) -> list[float]:
        assert trainer.optimizer is not None
        groups = trainer.optimizer.param_groups
        default = float(groups[0]["lr"])
        return [default if g is None else float(groups[g]["lr"]) for g in self._groups]

    def _losses(self, net: Any, batch: Batch) -> list[torch.Tensor]:
        outs = net.forward_list(*batch.inputs)
        return batch_losses(self._loss_fns, outs, batch)

    def _measure(self, trainer: Trainer, batch: Batch) -> None:
        present = present_tasks(batch)
        if not present:
            return
        net, shared = trainer.net, self._shared
        was_training = net.training
        net.eval()
        try:
            with torch.enable_grad():
                losses = self._losses(net, batch)
                grads = [
                    torch.autograd.grad(
                        losses[i], shared, retain_graph=k < len(present) - 1, allow_unused=True
                    )
                    for k, i in enumerate(present)
                ]
            before = torch.stack([losses[j].detach() for j in present]).tolist()
            lrs = self._lrs(trainer)
            saved = [p.detach().clone() for p in shared]
            with torch.no_grad():
                for i, task_grads in zip(present, grads, strict=True):
                    for p, g, lr in zip(shared, task_grads, lrs, strict=True):
                        if g is not None:
                            p.sub_(g, alpha=lr)
                    after_all = self._losses(net, batch)
                    after = torch.stack([after_all[j] for j in present]).tolist()
                    torch._foreach_copy_(shared, saved)
                    for b, a, j in zip(before, after, present, strict=True):
                        if b > 0:
                            self._sums[i, j] += 1.0 - a / b
                            self._counts[i, j] += 1
        finally:
            net.train(was_training)
        self._epoch_steps += 1
        self.measurements += 1


# -- reading it back ---------------------------------------------------------------------------


def affinity_over_training(
    history: list[dict[str, Any]],
) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(task names, mean matrix over training, per-epoch matrices (E, T, T)) from a run's
    history; epochs are weighted by how many steps were measured. None without affinity."""
    records = [r for r in history if r.get("affinity")]
    if not records:
        return None
    names = list(records[0]["affinity"]["matrix"])
    per_epoch = np.array(
        [
            [[_nan(r["affinity"]["matrix"][s].get(d)) for d in names] for s in names]
            for r in records
        ],
        dtype=float,
    )
    weights = np.array([max(int(r["affinity"].get("steps") or 0), 0) for r in records], float)
    present = ~np.isnan(per_epoch)
    w = weights[:, None, None] * present
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (np.where(present, per_epoch, 0.0) * w).sum(0) / w.sum(0)
    return names, mean, per_epoch


def affinity_cost(history: list[dict[str, Any]]) -> tuple[float, float | None]:
    """(seconds spent measuring, share of the epochs' time) over a run's history."""
    spent = sum(float(r["affinity"].get("seconds") or 0.0) for r in history if r.get("affinity"))
    total = sum(float(r.get("seconds") or 0.0) for r in history if r.get("affinity"))
    return spent, (spent / total if total > 0 else None)


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


#: between-task effects below this share of the tasks' own effects count as weak
WEAK = 0.05


def relative_strength(matrix: np.ndarray) -> float | None:
    """The largest |Z_i→j| (i ≠ j) as a share of the target's own Z_j→j: how much any task
    moves another next to how much that task's own step moves it. None without a
    positive diagonal."""
    z = np.asarray(matrix, dtype=float)
    diag = np.diag(z)
    ratios = [
        abs(z[i, j]) / diag[j]
        for i in range(len(z))
        for j in range(len(z))
        if i != j and np.isfinite(z[i, j]) and np.isfinite(diag[j]) and diag[j] > 0
    ]
    return max(ratios) if ratios else None


@dataclass(frozen=True)
class AffinitySummary:
    """Task affinity over training (one run, or the mean over seeds) with the recommended
    groupings: what the report, the tables and results.json show."""

    tasks: list[str]
    #: (T, T), NaN where never measured
    matrix: np.ndarray
    seconds: float
    share: float | None
    every: int | None
    groupings: list[Grouping]
    #: whose training it was measured in, and over how many seeds (a comparison's)
    variant: str | None = None
    seeds: int | None = None

    @property
    def strength(self) -> float | None:
        """The largest between-task effect as a share of the target's own."""
        return relative_strength(self.matrix)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "seeds": self.seeds,
            "every": self.every,
            "tasks": self.tasks,
            "matrix": [[None if math.isnan(x) else float(x) for x in row] for row in self.matrix],
            "seconds": self.seconds,
            "share": self.share,
            "strength": self.strength,
            "groupings": [
                {"models": len(g.groups), "groups": g.groups, "score": g.score}
                for g in self.groupings
            ],
        }


def groupings(names: list[str], matrix: np.ndarray) -> list[Grouping]:
    """The best split into G = 1..4 models (none beyond the exhaustive search's reach)."""
    if len(names) > MAX_TASKS:
        return []
    return [recommend_groups(names, matrix, g) for g in range(1, min(len(names), 4) + 1)]


def summarise_affinity(
    histories: list[list[dict[str, Any]]], variant: str | None = None
) -> AffinitySummary | None:
    """The affinity measured over one or several runs of one model (NaN-mean of their
    matrices over training; seconds summed, shares averaged). None if none measured it."""
    mats: list[np.ndarray] = []
    shares: list[float] = []
    names: list[str] = []
    spent, every = 0.0, None
    for h in histories:
        aff = affinity_over_training(h)
        if aff is None:
            continue
        names, mean, _ = aff
        mats.append(mean)
        s, share = affinity_cost(h)
        spent += s
        if share is not None:
            shares.append(share)
        every = next((r["affinity"].get("every") for r in h if r.get("affinity")), None)
    if not mats:
        return None
    matrix = mats[0] if len(mats) == 1 else np.nanmean(np.stack(mats), axis=0)
    return AffinitySummary(
        tasks=names,
        matrix=matrix,
        seconds=spent,
        share=float(np.mean(shares)) if shares else None,
        every=every,
        groupings=groupings(names, matrix),
        variant=variant,
        seeds=len(mats) if variant is not None else None,
    )
