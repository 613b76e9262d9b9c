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
from polytask.architectures.base import fused_linear
from polytask.balancing.base import Balancer, GradientBalancer, LossBalancer
from polytask.balancing.chain_jacobian import MIN_TASKS, ChainJacobian, supported
from polytask.balancing.jacobian import (
    DEFAULT_MEMORY_BOUND,
    blocks_gramian,
    cosine_from_gram,
    linear_head_gramian,
    outer_rep_gradients,
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

    def close(self) -> None:
        """Nothing to release (see :meth:`GradientStep.close`)."""


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
        #: every head one linear layer on the representation: the heads run as one matrix
        #: product and task t's representation gradient is D_t W_t (no per-head backward)
        self.linear = net.linear_heads()
        #: closed-form Gramian at the representation: linear heads, a Gramian method
        self.closed_form = (
            level == "representation" and self.linear is not None and not balancer.needs_matrix
        )
        #: parameter level over an MLP: its batched backward written out (chain_jacobian)
        self.chain: ChainJacobian | None = None
        chain = net.shared_chain() if level == "parameters" else None
        if (
            chain is not None
            and len(chain)
            and len(tasks) >= MIN_TASKS
            and all(supported(m) for m in chain)
        ):
            self.chain = ChainJacobian(chain, self.trunk)
        #: the last step's (T_present, T_present) cosines and their task indices
        self.last_cosine: tuple[list[int], torch.Tensor] | None = None
        self.record_cosine = False

    def close(self) -> None:
        """Remove the forward hooks the chain Jacobian put on the model (after training)."""
        if self.chain is not None:
            self.chain.tape.remove()
            self.chain = None

    def __call__(self, batch: Batch) -> list[torch.Tensor]:
        tape = None if self.chain is None else self.chain.tape
        if tape is None:
            return self._step(batch, self.net.representation(*batch.inputs), False)
        tape.arm()
        try:
            rep = self.net.representation(*batch.inputs)
            tape.disarm()
            return self._step(batch, rep, tape.valid_for(rep))
        finally:
            tape.disarm()
            tape.records = []  # the activations go with the step

    def _step(self, batch: Batch, rep: torch.Tensor, by_hand: bool) -> list[torch.Tensor]:
        """``by_hand``: the chain Jacobian applies (its task gradients are (N, T, H))."""
        task_dim = 1 if by_hand else 0
        if self.linear is not None and rep.dim() == 2:
            losses, present, out_grads = self._linear_heads(batch, rep)
            if not present:
                return losses
            weights = [self.linear[t].weight.detach() for t in present]
            if self.closed_form:
                return self._closed_form(rep, losses, present, out_grads, weights)
            detached = [losses[i].detach() for i in present]
            if (
                self.level == "representation"
                and self.sync is None
                and self._outer_direction(rep, present, detached, out_grads, weights)
            ):
                return losses
            out = None
            if by_hand and all(g.shape[1] == 1 for g in out_grads):
                assert self.chain is not None
                shape = (rep.shape[0], len(present), rep.shape[1])
                out = self.chain.buffer("rep_grads", shape, rep)
            rep_grads = outer_rep_gradients(out_grads, weights, task_dim, out)
        else:
            losses, present, rep_grads = self._head_pass(batch, rep, task_dim)
            if not present:
                return losses
            detached = [losses[i].detach() for i in present]
        if self.level == "representation":
            self._at_representation(rep, rep_grads, present, detached)
        else:
            self._at_parameters(rep, rep_grads, present, detached, by_hand)
        return losses

    # -- the heads ---------------------------------------------------------------------------
    def _losses(
        self, outs: list[torch.Tensor], batch: Batch
    ) -> tuple[list[torch.Tensor], list[int]]:
        losses = batch_losses(self.loss_fns, outs, batch)
        if self.sync is None:
            return losses, present_tasks(batch)
        return self.sync.losses(losses, batch), self.sync.present  # labelled on any process

    def _head_pass(
        self, batch: Batch, rep: torch.Tensor, task_dim: int
    ) -> tuple[list[torch.Tensor], list[int], torch.Tensor]:
        """Any heads: each on its own alias of the representation, one backward."""
        split = split_forward(rep, self.heads, lambda outs: self._losses(outs, batch)[0])
        present = present_tasks(batch) if self.sync is None else self.sync.present
        rep_grads = representation_gradients(split, present, task_dim)  # heads' .grad set
        return split.losses, present, rep_grads

    def _linear_heads(
        self, batch: Batch, rep: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[int], list[torch.Tensor]]:
        """Linear heads as one product on the detached representation; one backward gives
        every head its own task's gradient and D_t, the gradient at head t's output."""
        assert self.linear is not None
        linear = self.linear
        out = fused_linear(linear, rep.detach())
        out.retain_grad()
        outs = list(out.split([h.out_features for h in linear], dim=1))
        losses, present = self._losses(outs, batch)
        total = losses[0]
        for loss in losses[1:]:
            total = total + loss
        total.backward()
        if not present:
            return losses, present, []
        d = out.grad if out.grad is not None else torch.zeros_like(out)
        grads = d.split([h.out_features for h in linear], dim=1)
        return losses, present, [grads[t] for t in present]

    # -- the two levels ----------------------------------------------------------------------
    def _at_representation(
        self,
        rep: torch.Tensor,
        rep_grads: torch.Tensor,
        present: list[int],
        losses: list[torch.Tensor],
    ) -> None:
        matrix = rep_grads.reshape(len(present), -1)
        if self.sync is None:
            direction = self.balancer.aggregate(matrix, present, losses)
            if self.record_cosine:
                self.last_cosine = (present, pairwise_cosine(matrix.detach()))
        else:
            direction = self._distributed_direction(rep_grads, matrix, present, losses)
        rep.backward(direction.view_as(rep))
        self._scale_heads(present)
        if self.sync is not None:
            self.sync.sum_grads(self.trunk + self.head_params)

    def _at_parameters(
        self,
        rep: torch.Tensor,
        rep_grads: torch.Tensor,
        present: list[int],
        losses: list[torch.Tensor],
        by_hand: bool,
    ) -> None:
        """The (T, numel) block of every shared parameter: by hand through an MLP chain
        (rep_grads (N, T, H)), else with autograd's batched backward (rep_grads (T, ...))."""
        if by_hand:
            assert self.chain is not None
            blocks = self.chain.blocks(rep_grads, self.memory_bound)
        else:
            blocks = trunk_jacobian_blocks(rep, self.trunk, rep_grads, self.memory_bound)
        if self.sync is not None:
            blocks = self.sync.sum_blocks(blocks)  # every process: the whole batch's Jacobian
        if self.balancer.needs_matrix:
            matrix = self.chain.matrix(blocks) if by_hand else torch.cat(blocks, dim=1)
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
        if self.sync is not None:
            self.sync.sum_grads(self.head_params)

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

    def _closed_form(
        self,
        rep: torch.Tensor,
        losses: list[torch.Tensor],
        present: list[int],
        out_grads: list[torch.Tensor],
        weights: list[torch.Tensor],
    ) -> list[torch.Tensor]:
        """Linear heads, Gramian method, at the representation: J_t = D_t W_t, so the
        Gramian and the combined gradient need no (T, N, H) tensor."""
        gram, d, w = linear_head_gramian(out_grads, weights)
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

    def _outer_direction(
        self,
        rep: torch.Tensor,
        present: list[int],
        losses: list[torch.Tensor],
        out_grads: list[torch.Tensor],
        weights: list[torch.Tensor],
    ) -> bool:
        """Linear one-output heads at the representation: task t's gradient is the outer
        product d_t w_tᵀ, which methods that look at single coordinates (GradDrop) can use
        without the (T, N, H) matrix. False when the method has no such form."""
        if any(g.shape[1] != 1 for g in out_grads):
            return False
        d = torch.cat(out_grads, dim=1).T
        w = torch.cat(weights)
        direction = self.balancer.outer_direction(d, w, present, losses)
        if direction is None:
            return False
        rep.backward(direction.view_as(rep))
        self._scale_heads(present)
        if self.record_cosine:
            self.last_cosine = (present, cosine_from_gram((d @ d.T) * (w @ w.T)))
        return True


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
