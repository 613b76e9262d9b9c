"""What a balancing method may ask after the optimiser step (``Balancer.after_update``).

Calling the probe gives the step batch's task losses at the updated parameters (FAMO's
second forward), as the plain closure did. Bilevel methods (Auto-Lambda) also need task
losses on other rows of the training split, with their graph, and the parameters to
differentiate and perturb: :meth:`TrainingProbe.losses` and :attr:`params`. Those
forwards run in evaluation mode (no dropout, batch norm on its running statistics), so
two evaluations at nearby parameters differ by the parameters alone; every process holds
the whole training split, so the same rows give the same losses everywhere. The probe
is one object for the whole fit; nothing is computed unless a method asks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from polytask.architectures import MultiTaskNet
from polytask.features.batches import TensorTable
from polytask.tasks import Task
from polytask.tasks.grouped import grouped_losses


class TrainingProbe:
    def __init__(
        self,
        net: MultiTaskNet,
        tasks: list[Task],
        table: TensorTable,
        optimizer: torch.optim.Optimizer,
    ):
        self.net, self.tasks, self.table, self.optimizer = net, tasks, table, optimizer
        self.params = [p for p in net.parameters() if p.requires_grad]
        self._closure: Callable[[], list[torch.Tensor]] = list

    def at(self, closure: Callable[[], list[torch.Tensor]]) -> TrainingProbe:
        """This step's probe: calling it gives ``closure()`` (no new object per step)."""
        self._closure = closure
        return self

    def __call__(self) -> list[torch.Tensor]:
        return self._closure()

    @property
    def rows(self) -> int:
        """Rows in the training split."""
        return len(self.table)

    @property
    def lr(self) -> float:
        """The optimiser's current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def losses(self, rows: torch.Tensor, grad: bool = False) -> list[torch.Tensor]:
        """Each task's loss on training rows ``rows`` at the current parameters, in
        evaluation mode; ``grad``: attached to the graph of :attr:`params`."""
        t, f = self.table, self.table.features
        idx = rows.to(f.numeric.device)
        inputs = (f.numeric[idx], f.categorical[idx], *(x[idx] for x in f.extra.values()))
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.set_grad_enabled(grad):
                outs = self.net.forward_list(*inputs)
                targets = [y[idx] for y in t.targets]
                masks: list[torch.Tensor | None] = [m[idx] for m in t.masks]
                if grad:
                    return [
                        task.loss(o, y, m)
                        for task, o, y, m in zip(self.tasks, outs, targets, masks, strict=True)
                    ]
                return grouped_losses(self.tasks, outs, targets, masks)
        finally:
            self.net.train(was_training)
