"""Cheap visibility into balancing: task weights and gradient conflict, every k steps.

Every ``log_every`` steps, and at least ``MIN_PER_EPOCH`` times an epoch however short
the epochs, the trainer records the balancer's task weights (for gradient methods, the
implied weights of that step) and the pairwise cosine similarity of the task gradients
(for gradient methods, of the matrix the step already built; otherwise of the task
gradients at the shared representation, measured on the same batch). Each epoch's
history line gets their means, and for the cosines also how many measurements the mean
is of (``cosine_n``) and their spread (``cosine_sd``), which the conflict summary needs
to say whether a pair conflicts (:mod:`polytask.analysis.conflict`).
"""

from __future__ import annotations

from typing import Any

import torch

from polytask.architectures import MultiTaskNet
from polytask.balancing.jacobian import pairwise_cosine
from polytask.features.batches import Batch
from polytask.tasks import Task
from polytask.training.steps import GradientStep, present_tasks

#: what a checkpoint keeps of the log
STATE_FIELDS = ("count", "weight_sums", "weight_n", "cos_sums", "cos_n", "cos_squares")

#: the fewest measurements an epoch gets: a short run's cosines are evidence too
MIN_PER_EPOCH = 4


def pair_name(a: str, b: str) -> str:
    return f"{a}~{b}"


class BalanceLog:
    def __init__(self, task_names: list[str], log_every: int, steps_per_epoch: int = 0):
        self.names = task_names
        per_epoch = max(1, steps_per_epoch // MIN_PER_EPOCH) if steps_per_epoch else log_every
        self.every = min(log_every, per_epoch)
        self.count = 0
        self._reset()

    def _reset(self) -> None:
        self.weight_sums: dict[str, float] = {}
        self.weight_n: dict[str, int] = {}
        self.cos_sums: dict[str, float] = {}
        self.cos_n: dict[str, int] = {}
        self.cos_squares: dict[str, float] = {}

    def due(self) -> bool:
        self.count += 1
        return self.every > 0 and (self.count - 1) % self.every == 0

    def before(self, step: Any, net: Any, tasks: list[Any], batch: Any) -> None:
        if isinstance(step, GradientStep):
            step.record_cosine = True
            return
        present, cos = conflict_at_representation(net, tasks, batch)
        self._add_cosine(present, cos)

    def after(self, step: Any, balancer: Any) -> None:
        if isinstance(step, GradientStep):
            step.record_cosine = False
            if step.last_cosine is not None:
                self._add_cosine(*step.last_cosine)
                step.last_cosine = None
        for name, w in balancer.weights().items():
            if w == w:  # skip NaN (methods without weights)
                self.weight_sums[name] = self.weight_sums.get(name, 0.0) + float(w)
                self.weight_n[name] = self.weight_n.get(name, 0) + 1

    def state_dict(self) -> dict[str, Any]:
        """The step count and this epoch's running sums, for checkpoints (plain JSON)."""
        return {key: getattr(self, key) for key in STATE_FIELDS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in STATE_FIELDS:  # a checkpoint from before cos_squares: spread unknown, 0
            setattr(self, key, state.get(key, {}))

    def _add_cosine(self, present: list[int], cos: torch.Tensor) -> None:
        values = cos.detach().cpu().tolist()
        for a in range(len(present)):
            for b in range(a + 1, len(present)):
                key = pair_name(self.names[present[a]], self.names[present[b]])
                value = values[a][b]
                self.cos_sums[key] = self.cos_sums.get(key, 0.0) + value
                self.cos_squares[key] = self.cos_squares.get(key, 0.0) + value * value
                self.cos_n[key] = self.cos_n.get(key, 0) + 1

    def epoch_weights(self) -> dict[str, float]:
        out = {k: self.weight_sums[k] / self.weight_n[k] for k in self.weight_sums}
        self.weight_sums, self.weight_n = {}, {}
        return out

    def epoch_cosine(self) -> dict[str, dict[str, Any]]:
        """This epoch's history fields: ``cosine`` (mean per pair), ``cosine_n`` (how many
        measurements) and ``cosine_sd`` (their standard deviation); empty when none."""
        if not self.cos_sums:
            return {}
        means = {k: self.cos_sums[k] / self.cos_n[k] for k in self.cos_sums}
        spread = {
            k: max(0.0, self.cos_squares.get(k, 0.0) / self.cos_n[k] - m * m) ** 0.5
            if k in self.cos_squares
            else 0.0
            for k, m in means.items()
        }
        out: dict[str, dict[str, Any]] = {
            "cosine": {k: round(m, 6) for k, m in means.items()},
            "cosine_n": dict(self.cos_n),
            "cosine_sd": {k: round(v, 6) for k, v in spread.items()},
        }
        self.cos_sums, self.cos_n, self.cos_squares = {}, {}, {}
        return out


def conflict_at_representation(
    net: MultiTaskNet, tasks: list[Task], batch: Batch
) -> tuple[list[int], torch.Tensor]:
    """Pairwise cosine of the task gradients at the shared representation on one batch
    (a measurement: it touches no parameter's .grad)."""
    loss_fns = [t.loss for t in tasks]
    was_training = net.training
    net.eval()  # a measurement: no dropout noise, no batch-norm statistics update
    with torch.no_grad():
        rep = net.representation(*batch.inputs)
    aliases = [rep.detach().requires_grad_() for _ in tasks]
    outs = net.compose([h(a) for h, a in zip(net.head_modules(), aliases, strict=True)])
    present = present_tasks(batch)
    net.train(was_training)
    if not present:  # no task is labelled in this batch: nothing to compare
        return present, torch.zeros(0, 0)
    losses = [loss_fns[i](outs[i], batch.targets[i], batch.masks[i]) for i in present]
    grads = torch.autograd.grad(losses, [aliases[i] for i in present], allow_unused=True)
    rows = [(g if g is not None else torch.zeros_like(rep)).reshape(-1) for g in grads]
    return present, pairwise_cosine(torch.stack(rows))
