"""Early stopping: the best monitored value so far, its epoch and weights, and patience."""

from __future__ import annotations

import math
from dataclasses import InitVar, dataclass

import torch
from torch import nn

from polytask.training.state import FieldState


@dataclass
class EarlyStopping(FieldState):
    """Lower is better. An epoch improves when its value beats the best by more than
    ``min_delta``; training stops after ``patience`` epochs without improvement (never
    when ``patience`` is None). The fields are the checkpoint state; the best weights
    travel separately (``best_weights``, tensors)."""

    patience: InitVar[int | None] = None
    min_delta: InitVar[float] = 0.0
    best: float = math.inf
    best_epoch: int = 0
    since_best: int = 0
    stopped_early: bool = False

    def __post_init__(self, patience: int | None, min_delta: float) -> None:
        self._patience, self._min_delta = patience, min_delta
        #: a copy of the weights at ``best_epoch`` (restored when training ends)
        self.best_weights: dict[str, torch.Tensor] | None = None

    def update(self, monitor: float, epoch: int, net: nn.Module) -> bool:
        """Record the epoch's value; returns whether it improved (and snapshots the
        weights if so)."""
        improved = monitor < self.best - self._min_delta
        if improved:
            self.best, self.best_epoch, self.since_best = monitor, epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.since_best += 1
        self.stopped_early = self._patience is not None and self.since_best >= self._patience
        return improved

    def load_best(self, weights: dict[str, torch.Tensor] | None, device: torch.device) -> None:
        """The best weights from a checkpoint (on the training device)."""
        self.best_weights = (
            None if weights is None else {k: v.to(device) for k, v in weights.items()}
        )

    def restore_best(self, net: nn.Module) -> None:
        if self.best_weights is not None:
            net.load_state_dict(self.best_weights)
