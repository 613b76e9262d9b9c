"""The state of one training run: the epoch loop's counters (checkpointed field by field,
see :mod:`polytask.training.state`), what ``Trainer.fit`` shares between its epochs, and
what it returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from polytask.features.batches import TensorTable
from polytask.training.balance_log import BalanceLog
from polytask.training.checkpoint import Checkpointer
from polytask.training.distributed import StepSync
from polytask.training.divergence import DivergenceWatch
from polytask.training.early_stopping import EarlyStopping
from polytask.training.history import HistoryWriter
from polytask.training.progress import TrainingProgress
from polytask.training.schedule import CheckpointSchedule
from polytask.training.state import FieldState


@dataclass
class LoopState(FieldState):
    """Where the epoch loop stands (a checkpoint's counters, with
    :class:`~polytask.training.early_stopping.EarlyStopping`'s)."""

    #: the current epoch (from 1), or the next one after an epoch-end checkpoint
    epoch: int = 1
    #: optimiser steps done in ``epoch``
    step_in_epoch: int = 0
    #: the epoch loop is over (last epoch or early stop)
    finished: bool = False
    #: training seconds before this process (a resumed run)
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns (the best weights are already in the net)."""

    best_epoch: int
    epochs_run: int
    best_monitor: float
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FitRun:
    """What one call of :meth:`Trainer.fit` shares between its epochs."""

    train: TensorTable
    val: TensorTable | None
    generator: torch.Generator
    monitor_log: BalanceLog
    early: EarlyStopping
    watch: DivergenceWatch
    checkpoints: Checkpointer | None
    sync: StepSync | None
    #: batches in an epoch
    steps: int
    loop: LoopState = field(default_factory=LoopState)
    #: a resumed mid-epoch's running loss sums, until that epoch takes them
    running: list[torch.Tensor] | None = None
    on_batch_begin: list[Callable[..., None]] = field(default_factory=list)
    on_batch_end: list[Callable[..., None]] = field(default_factory=list)
    step: Any = None
    started: float = 0.0
    # set once fit enters its context managers
    schedule: CheckpointSchedule = field(init=False)
    bar: TrainingProgress = field(init=False)
    history: HistoryWriter = field(init=False)

    def result(self) -> TrainResult:
        early, loop = self.early, self.loop
        return TrainResult(
            best_epoch=early.best_epoch,
            epochs_run=len(loop.history),
            best_monitor=early.best,
            stopped_early=early.stopped_early,
            seconds=loop.seconds + time.perf_counter() - self.started,
            history=loop.history,
        )
