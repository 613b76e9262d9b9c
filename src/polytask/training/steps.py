"""One training step's gradient computation, per kind of balancer.

``LossStep``: the balancer turns the task losses into one objective; one backward pass.
``GradientStep``: per-task gradients from the Jacobian engine (see
:mod:`polytask.balancing.jacobian`), aggregated by the balancer at the representation or
at the shared parameters. Both return the detached task losses and leave ``.grad`` set;
the trainer clips and steps the optimiser.

With several processes (:mod:`polytask.training.distributed`) a step gets a ``sync``
object that turns the local losses into global ones and sums the gradient pieces across
processes; with one process ``sync`` is None and none of that code runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from polytask.architectures import MultiTaskNet
from polytask.balancing.base import Balancer, GradientBalancer, LossBalancer
from polytask.balancing.jacobian import (
    DEFAULT_MEMORY_BOUND,
    blocks_gramian,
    cosine_from_gram,
    linear_head_gramian,
    pairwise_cosine,
    representation_gradients,
    split_forward,
    trunk_jacobian_blocks,
    write_blocks,
    write_grad,
)
from polytask.errors import PolytaskError
from polytask.features.batches import Batch
from polytask.tasks import Task

if TYPE_CHECKING:
    from polytask.training.distributed import StepSync

LossFns = list[Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]]


def batch_losses(loss_fns: LossFns, outs: list[torch.Tensor], batch: Batch) -> list[torch.Tensor]:
    """Each task's (masked) loss on the batch, in task order."""
    return [
        f(o, y, m) for f, o, y, m in zip(loss_fns, outs, batch.targets, batch.masks, strict=True)
    ]


def present_tasks(batch: Batch) -> list[int]:
    """Tasks with at least one label in the batch (the others sit this step out)."""
    return [i for i, m in enumerate(batch.masks) if m is None or bool(m.any())]


class LossStep:
    def __init__(
        self,
        net: MultiTaskNet,
        tasks: list[Task],
        balancer: LossBalancer,
        sync: StepSync | None = None,
    ):
        self.forward = net.forward_list
        self.loss_fns: LossFns = [t.loss for t in tasks]
        self.combine = balancer.combine
        self.sync = sync
        self.params = [p for p in net.parameters() if p.requires_grad]

    def __call__(self, batch: Batch) -> list[torch.Tensor]:
        outs = self.forward(*batch.inputs)
        losses = batch_losses(self.loss_fns, outs, batch)
        if self.sync is None:
            self.combine(losses).backward()
            return losses
        losses = self.sync.losses(losses, batch)
        self.combine(losses).backward()
        self.sync.sum_grads(self.params)
        return losses


class GradientStep:
    def __init__(
        self,
        net: MultiTaskNet,
        tasks: list[Task],
        balancer: GradientBalancer,
        level: str,
        memory_bound: int = DEFAULT_MEMORY_BOUND,
        sync: StepSync | None = None,
    ):
        self.net = net
        self.heads = net.head_modules()
        self.trunk = [p for p in net.shared_parameters() if p.requires_grad]
        self.head_params = [p for h in self.heads for p in h.parameters() if p.requires_grad]
        self.sync = sync
        if not self.trunk:
            raise PolytaskError(
                f"balancing method '{balancer.name}' combines gradients of shared layers, but "
                "the model has none (model.hidden is empty); add shared layers or use a "
                "loss-level method such as ew"
            )
        self.loss_fns: LossFns = [t.loss for t in tasks]
        self.balancer = balancer
        self.level = level
        self.memory_bound = memory_bound
        balancer.on_level(level)
        linear = net.linear_heads()
        #: closed-form Gramian at the representation: linear heads, a Gramian method
        self.closed_form = (
            level == "representation" and linear is not None and not balancer.needs_matrix
        )
        self.linear = linear or []
        #: the last step's (T_present, T_present) cosines and their task indices
        self.last_cosine: tuple[list[int], torch.Tensor] | None = None
        self.record_cosine = False

    def __call__(self, batch: Batch) -> list[torch.Tensor]:
        rep = self.net.representation(*batch.inputs)
        if self.closed_form:
            return self._closed_form(batch, rep)

        sync = self.sync
        if sync is None:
            split = split_forward(
                rep, self.heads, lambda outs: batch_losses(self.loss_fns, outs, batch)
            )
            present = present_tasks(batch)
        else:
            split = split_forward(
                rep,
                self.heads,
                lambda outs: sync.losses(batch_losses(self.loss_fns, outs, batch), batch),
            )
            present = sync.present  # tasks labelled on any process
        rep_grads = representation_gradients(split, present)  # heads' .grad are set here
        if not present:
            return split.losses
        losses = [split.losses[i].detach() for i in present]
        if self.level == "representation":
            matrix = rep_grads.reshape(len(present), -1)
            if sync is None:
                direction = self.balancer.aggregate(matrix, present, losses)
                if self.record_cosine:
                    self.last_cosine = (present, pairwise_cosine(matrix.detach()))
            else:
                direction = self._distributed_direction(rep_grads, matrix, present, losses)
            rep.backward(direction.view_as(rep))
            self._scale_heads(present)
            if sync is not None:
                sync.sum_grads(self.trunk + self.head_params)
            return split.losses
        blocks = trunk_jacobian_blocks(rep, self.trunk, rep_grads, self.memory_bound)
        if sync is not None:
            blocks = sync.sum_blocks(blocks)  # every process: the whole batch's Jacobian
        if self.balancer.needs_matrix:
            matrix = torch.cat(blocks, dim=1)
            write_grad(self.trunk, self.balancer.aggregate(matrix, present, losses))
            if self.record_cosine:
                self.last_cosine = (present, pairwise_cosine(matrix.detach()))
        else:  # Gramian methods: K = Σ_blocks B Bᵀ, grads c @ B, no (T, P) copy
            gram = blocks_gramian(blocks)
            coef = self.balancer.weigh(gram, present, losses)
            write_blocks(
                self.trunk, blocks, torch.as_tensor(coef, dtype=gram.dtype, device=gram.device)
            )
            if self.record_cosine:
                self.last_cosine = (present, cosine_from_gram(gram.detach()))
        self._scale_heads(present)
        if sync is not None:
            sync.sum_grads(self.head_params)
        return split.losses

    def _distributed_direction(
        self,
        rep_grads: torch.Tensor,
        matrix: torch.Tensor,
        present: list[int],
        losses: list[torch.Tensor],
    ) -> torch.Tensor:
        """This process's rows of the direction the balancer picks for the whole batch:
        from the summed Gramian, or from the gathered rows for methods that need them."""
        assert self.sync is not None
        if self.balancer.needs_matrix:
            full, lo, hi = self.sync.gather_rows(rep_grads)
            whole = full.reshape(len(present), -1)
            direction = self.balancer.aggregate(whole, present, losses).view(full.shape[1:])
            if self.record_cosine:
                self.last_cosine = (present, pairwise_cosine(whole.detach()))
            return direction[lo:hi]
        gram = self.sync.sum_(matrix @ matrix.T)
        coef = self.balancer.weigh(gram, present, losses)
        if self.record_cosine:
            self.last_cosine = (present, cosine_from_gram(gram.detach()))
        return torch.as_tensor(coef, dtype=matrix.dtype, device=matrix.device) @ matrix

    def _scale_heads(self, present: list[int]) -> None:
        factors = self.balancer.head_factors(present)
        if factors is None:
            return
        for t, f in zip(present, factors, strict=True):
            for p in self.heads[t].parameters():
                if p.grad is not None:
                    p.grad.mul_(float(f))

    def _closed_form(self, batch: Batch, rep: torch.Tensor) -> list[torch.Tensor]:
        """Linear heads at the representation: J_t = D_t W_t with D_t the gradient at the
        head's output, so the Gramian and the combined gradient need no (T, N, H) tensor."""
        shared = rep.detach()
        outs = [head(shared) for head in self.heads]
        for o in outs:
            o.retain_grad()
        losses = batch_losses(self.loss_fns, outs, batch)
        if self.sync is not None:
            losses = self.sync.losses(losses, batch)
        total = losses[0]
        for loss in losses[1:]:
            total = total + loss
        total.backward()  # every head gets its own task's gradient
        present = present_tasks(batch) if self.sync is None else self.sync.present
        if not present:
            return losses
        out_grads = [
            outs[t].grad.reshape(outs[t].shape[0], -1)
            if outs[t].grad is not None
            else torch.zeros_like(outs[t]).reshape(outs[t].shape[0], -1)
            for t in present
        ]
        gram, d, w = linear_head_gramian(
            out_grads, [self.linear[t].weight.detach() for t in present]
        )
        if self.sync is not None:
            gram = self.sync.sum_(gram)  # a sum over rows: the whole batch's Gramian
        coef = self.balancer.weigh(gram, present, [losses[t].detach() for t in present])
        sizes = [g.shape[1] for g in out_grads]
        scale = torch.repeat_interleave(
            torch.as_tensor(coef, dtype=d.dtype, device=d.device),
            torch.tensor(sizes, device=d.device),
        )
        rep.backward((d * scale) @ w)
        self._scale_heads(present)
        if self.record_cosine:
            self.last_cosine = (present, cosine_from_gram(gram.detach()))
        if self.sync is not None:
            self.sync.sum_grads(self.trunk + self.head_params)
        return losses


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
    outs = [h(a) for h, a in zip(net.head_modules(), aliases, strict=True)]
    present = present_tasks(batch)
    net.train(was_training)
    if not present:  # no task is labelled in this batch: nothing to compare
        return present, torch.zeros(0, 0)
    losses = [loss_fns[i](outs[i], batch.targets[i], batch.masks[i]) for i in present]
    grads = torch.autograd.grad(losses, [aliases[i] for i in present], allow_unused=True)
    rows = [(g if g is not None else torch.zeros_like(rep)).reshape(-1) for g in grads]
    return present, pairwise_cosine(torch.stack(rows))


def make_step(
    net: MultiTaskNet,
    tasks: list[Task],
    balancer: Balancer,
    level: str,
    sync: StepSync | None = None,
) -> LossStep | GradientStep:
    if isinstance(balancer, GradientBalancer):
        return GradientStep(net, tasks, balancer, level, sync=sync)
    assert isinstance(balancer, LossBalancer)
    return LossStep(net, tasks, balancer, sync=sync)
