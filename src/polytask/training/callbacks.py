"""Hooks into the training loop for work that is not training itself (tracking, task
affinity, checkpoints). Each hook is optional: subclass :class:`Callback` and override
what you need. The loop calls only the hooks a callback overrides, so an unused hook
costs nothing per step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polytask.features.batches import Batch
    from polytask.training.trainer import Trainer, TrainResult


class Callback:
    """Base class; every hook does nothing."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """After the optimiser and scheduler exist (``trainer.optimizer``,
        ``trainer.scheduler``), before the first step."""

    def on_batch_begin(self, trainer: Trainer, step: int, batch: Batch) -> None:
        """Before the step on ``batch``; ``step`` counts from 1 over the whole run."""

    def on_batch_end(self, trainer: Trainer, step: int, batch: Batch) -> None:
        """After the optimiser step on ``batch``."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """With the epoch's history record, before it is written: a callback may add keys."""

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        """After training, with the best weights restored."""


def overrides(callbacks: list[Callback], hook: str) -> list[Any]:
    """The bound ``hook`` methods of the callbacks that override it."""
    base = getattr(Callback, hook)
    return [getattr(cb, hook) for cb in callbacks if getattr(type(cb), hook) is not base]
