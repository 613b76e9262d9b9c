"""Stop at the first NaN or infinite task loss, naming the task, the step and the batch,
at the cost of one host sync every ``FINITE_CHECK_STEPS`` steps."""

from __future__ import annotations

import math

import torch

from polytask.errors import PolytaskError
from polytask.training.checkpoint import Checkpointer

#: steps between checks of the task losses for NaN/inf (one host sync each)
FINITE_CHECK_STEPS = 64

_FIX = "lower training.lr, set training.grad_clip, or check that task's labels"


class TrainingDiverged(PolytaskError):
    """The loss became NaN or infinite."""


class DivergenceWatch:
    """Keeps the detached losses of the steps since the last check. The running sums
    carry any NaN or inf, so one check of them covers the window; only a bad window is
    searched for its first bad loss."""

    def __init__(self, names: list[str], checkpoints: Checkpointer | None = None):
        self.names = names
        self.checkpoints = checkpoints
        self.window: list[list[torch.Tensor]] = []

    def add(
        self,
        detached: list[torch.Tensor],
        running: list[torch.Tensor],
        epoch: int,
        i: int,
        global_step: int,
    ) -> None:
        """One step's losses; checks the window once it is ``FINITE_CHECK_STEPS`` long."""
        window = self.window
        window.append(detached)
        if len(window) >= FINITE_CHECK_STEPS:
            self.check(running, epoch, i, global_step)

    def check(self, running: list[torch.Tensor], epoch: int, i: int, global_step: int) -> None:
        """Raise :class:`TrainingDiverged` if a loss of the window is not finite, else
        start a new window (``i``: the batch just done, from 1 in the epoch)."""
        window = self.window
        if not window:
            return
        if bool(torch.stack(running).isfinite().all()):
            window.clear()
            return
        values = torch.stack([torch.stack(w) for w in window])
        bad = (~values.isfinite()).nonzero()
        if not len(bad):  # the sums overflowed, no single loss did
            window.clear()
            return
        row, task = bad[0].tolist()
        back = len(window) - 1 - row
        raise TrainingDiverged(
            f"the loss of task '{self.names[task]}' became {values[row, task].item()} at step "
            f"{global_step - back} (epoch {epoch}, batch {i - back}); training stopped"
            f"{self._kept()}; {_FIX}"
        )

    def _kept(self) -> str:
        ckpt = self.checkpoints
        if ckpt is not None and ckpt.last_step is not None and ckpt.folder is not None:
            return f"; the last good checkpoint (step {ckpt.last_step}) is kept in '{ckpt.folder}'"
        return ""


def check_finite(losses: dict[str, float], epoch: int) -> None:
    """The epoch's mean task losses (read back already) must be finite."""
    bad = [name for name, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(
            f"the loss of task '{bad[0]}' became {losses[bad[0]]} in epoch {epoch}; {_FIX}"
        )
