"""One training step's gradient computation, per kind of balancer.

``LossStep``: the balancer turns the task losses into one objective; one backward pass.
``GradientStep``: the task Jacobian at the representation or at the shared parameters,
from the engine that fits (see :mod:`polytask.balancing.jacobian`), handed to the
method, which writes the update through it. Both return the task losses and leave
``.grad`` set; the trainer clips and steps the optimiser, then hands the method a closure
that recomputes the losses (:meth:`~polytask.balancing.base.Balancer.after_update`).

With several processes (:mod:`polytask.training.distributed`) a step gets a ``sync``
object: it turns the local losses into global ones, sums the Jacobian blocks (parameter
level) or wraps the representation-level Jacobian (``ShardedRows``), and sums the
gradients after the update; with one process ``sync`` is None and none of that runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from polytask.architectures import MultiTaskNet
from polytask.architectures.base import fused_linear
from polytask.balancing.base import (
    Balancer,
    GradientBalancer,
    LossBalancer,
    Losses,
    loss_values,
)
from polytask.balancing.chain_jacobian import MIN_TASKS, ChainJacobian, supported
from polytask.balancing.gramian import GramianEngine, GramianJacobian
from polytask.balancing.jacobian import (
    DEFAULT_MEMORY_BOUND,
    LinearHeadJacobian,
    RepresentationJacobian,
    TaskJacobian,
    TrunkJacobian,
    cosine_from_gram,
    outer_rep_gradients,
    representation_gradients,
    split_forward,
    trunk_jacobian_blocks,
)
from polytask.errors import PolytaskError
from polytask.features.batches import Batch
from polytask.tasks import Task
from polytask.tasks.compose import composing_task
from polytask.tasks.grouped import grouped_losses
from polytask.training.distributed import ShardedRows
from polytask.training.precision import Precision, to_fp32

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
        precision: Precision | None = None,
    ):
        self.net, self.tasks = net, tasks
        self.forward = net.forward_list
        self.loss_fns: LossFns = [t.loss for t in tasks]
        self.combine = balancer.combine
        self.sync = sync
        self.params = [p for p in net.parameters() if p.requires_grad]
        #: mixed precision (None: fp32, and the step is exactly the plain one)
        self.amp = precision if precision is not None and precision.enabled else None

    def __call__(self, batch: Batch) -> list[torch.Tensor]:
        if self.amp is None:
            outs = self.forward(*batch.inputs)
        else:
            with self.amp.autocast():
                outs = self.forward(*batch.inputs)
            outs = to_fp32(outs)
        losses = batch_losses(self.loss_fns, outs, batch)
        if self.sync is not None:
            losses = self.sync.losses(losses, batch)
        objective = self.combine(losses)
        if self.amp is None:
            objective.backward()
        else:
            self.amp.backward(objective)
        if self.sync is not None:
            self.sync.sum_grads(self.params)
        return losses

    def losses_after(self, batch: Batch) -> Callable[[], list[torch.Tensor]]:
        """The batch's losses at the updated parameters, on demand (see
        :meth:`polytask.balancing.Balancer.after_update`)."""
        return losses_after(self.net, self.tasks, batch, self.sync)

    def close(self) -> None:
        """Nothing to release (see :meth:`GradientStep.close`)."""


class GradientStep:
    """One step of a gradient-level method, read as the algorithm: forward to the shared
    representation, the heads' losses and their gradients there, the task Jacobian from
    the engine that fits (closed-form linear heads, the written-out MLP chain, batched
    autograd), the method's update through it, the heads scaled as the method trains
    them, and with several processes the gradients summed."""

    def __init__(
        self,
        net: MultiTaskNet,
        tasks: list[Task],
        balancer: GradientBalancer,
        level: str,
        memory_bound: int = DEFAULT_MEMORY_BOUND,
        sync: StepSync | None = None,
        precision: Precision | None = None,
    ):
        self.net = net
        #: mixed precision of the trunk's forward (None: fp32); the heads, the Jacobian
        #: and the Gramian stay fp32
        self.amp = precision if precision is not None and precision.enabled else None
        self.heads = net.head_modules()
        self.trunk = [p for p in net.shared_parameters() if p.requires_grad]
        self.head_params = [p for h in self.heads for p in h.parameters() if p.requires_grad]
        self.sync = sync
        if not self.trunk:
            raise PolytaskError(
                f"balancing method '{balancer.name}' combines gradients of shared layers, but "
                "the model has none (model.hidden is empty and nothing before it learns); add "
                "shared layers or use a loss-level method such as ew"
            )
        self.tasks = tasks
        self.loss_fns: LossFns = [t.loss for t in tasks]
        self.balancer = balancer
        self.level = level
        self.memory_bound = memory_bound
        #: every head one linear layer on the representation: the heads run as one matrix
        #: product and task t's representation gradient is D_t W_t (no per-head backward)
        self.linear = net.linear_heads()
        #: parameter level over an MLP: its batched backward written out (chain_jacobian),
        #: in fp32 only (it records the trunk's activations)
        by_hand = level == "parameters" and self.amp is None
        self.chain = _chain(net, self.trunk, len(tasks)) if by_hand else None
        #: parameter level for a method that needs only the Gramian, where the chain does
        #: not apply: the Gramian layer by layer (balancing/gramian.py), in fp32 only too
        self.gramian = (
            GramianEngine([net], self.trunk)
            if self.chain is None and self.amp is None and _gramian_fits(balancer, level, sync)
            else None
        )
        #: gradients summed across processes after the update (the trunk's are summed
        #: before it at the parameter level, as Jacobian blocks)
        self.summed_after = (
            self.head_params if level == "parameters" else self.trunk + self.head_params
        )
        #: the last step's (T_present, T_present) cosines and their task indices
        self.last_cosine: tuple[list[int], torch.Tensor] | None = None
        self.record_cosine = False
        #: this step reuses the method's coefficients (no Jacobian was taken)
        self._reusing = False

    def close(self) -> None:
        """Remove the forward hooks the chain Jacobian put on the model (after training)."""
        if self.chain is not None:
            self.chain.tape.remove()
            self.chain = None
        if self.gramian is not None:
            self.gramian.remove()
            self.gramian = None

    def losses_after(self, batch: Batch) -> Callable[[], list[torch.Tensor]]:
        return losses_after(self.net, self.tasks, batch, self.sync)

    def __call__(self, batch: Batch) -> list[torch.Tensor]:
        if self.gramian is not None:
            try:
                with self.gramian.recording():
                    rep = self.net.representation(*batch.inputs)
                return self._step(batch, rep, False)
            finally:
                self.gramian.records = {}  # the activations go with the step
        tape = None if self.chain is None else self.chain.tape
        if self.amp is not None:
            with self.amp.autocast():
                rep = self.net.representation(*batch.inputs)
            return self._step(batch, rep.float(), False)
        if tape is None or self.balancer.reuses():  # a step that reuses needs no Jacobian
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
        """``by_hand``: the chain Jacobian applies (it takes task gradients (N, T, H))."""
        losses, present, jac = self._jacobian(batch, rep, by_hand)
        if jac is None:  # no task is labelled in this batch
            return losses
        reused = self._reusing
        values: Losses = [losses[t].detach() for t in present]
        if self.balancer.needs_losses or self.balancer.head_loss == "log":
            values = loss_values(values)  # one read-back, shared with the heads' scaling
        coef = self.balancer.update(jac, present, values, self.level)
        if self.record_cosine and not reused:
            self.last_cosine = (present, cosine_from_gram(jac.gram().detach()))
        self._scale_heads(present, coef, values)
        if self.sync is not None:  # a reused step back-propagated its own rows: sum all
            self.sync.sum_grads(self.trunk + self.head_params if reused else self.summed_after)
        return losses

    # -- the engines ---------------------------------------------------------------------------
    def _jacobian(
        self, batch: Batch, rep: torch.Tensor, by_hand: bool
    ) -> tuple[list[torch.Tensor], list[int], TaskJacobian | None]:
        """The losses, the tasks present and their Jacobian at ``self.level``; at the
        representation when the method reuses coefficients it has (``reuses``): the
        representation's gradients weighted by them, back-propagated once, are then the
        parameter-level update c @ G too (the chain rule), with no (T, P) Jacobian."""
        task_dim = 1 if by_hand else 0
        self._reusing = False
        if self.linear is not None and rep.dim() == 2:
            losses, present, out_grads = self._linear_heads(batch, rep)
            if not present:
                return losses, present, None
            weights = [self.linear[t].weight.detach() for t in present]
            if self._at_representation(present):
                return losses, present, self._at_rep(LinearHeadJacobian(rep, out_grads, weights))
            out = None
            if by_hand and all(g.shape[1] == 1 for g in out_grads):
                assert self.chain is not None
                shape = (rep.shape[0], len(present), rep.shape[1])
                out = self.chain.buffer("rep_grads", shape, rep)
            rep_grads = outer_rep_gradients(out_grads, weights, task_dim, out)
        else:
            losses, present, rep_grads = self._head_pass(batch, rep, task_dim)
            if not present:
                return losses, present, None
            if self._at_representation(present):
                return losses, present, self._at_rep(RepresentationJacobian(rep, rep_grads))
        return losses, present, self._trunk_jacobian(rep, rep_grads, by_hand)

    def _at_representation(self, present: list[int]) -> bool:
        self._reusing = self.balancer.reuses(present)
        return self._reusing or self.level == "representation"

    def _at_rep(self, jac: RepresentationJacobian) -> TaskJacobian:
        return jac if self.sync is None else ShardedRows(jac, self.sync)

    def _trunk_jacobian(
        self, rep: torch.Tensor, rep_grads: torch.Tensor, by_hand: bool
    ) -> TaskJacobian:
        """The Gramian layer by layer (the Gramian engine), or the (T, numel) block of
        every shared parameter: by hand through an MLP chain (rep_grads (N, T, H)), else
        with autograd's batched backward (rep_grads (T, ...)); with several processes,
        summed: every process has the whole batch's Jacobian."""
        if self.gramian is not None:
            gram = self.gramian.gramian(rep, rep_grads)[0]
            return GramianJacobian(rep, rep_grads, gram, self.trunk)
        if by_hand:
            assert self.chain is not None
            blocks = self.chain.blocks(rep_grads, self.memory_bound)
            concat = self.chain.matrix  # into its reused buffer
        else:
            blocks = trunk_jacobian_blocks(rep, self.trunk, rep_grads, self.memory_bound)
            concat = None
        if self.sync is not None:
            blocks = self.sync.sum_blocks(blocks)
        return TrunkJacobian(self.trunk, blocks, concat)

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

    def _scale_heads(self, present: list[int], coef: np.ndarray | None, losses: Losses) -> None:
        """Each head trained on what the method says (its ``head_factors``): L_t (as the
        heads' backward left it), w_t L_t with the step's coefficients, log L_t (gradient
        ∇L_t / L_t), or a scale of its own (IMTL's e^s L_t)."""
        factors = self.balancer.head_factors(coef, losses)
        if factors is None:
            return
        for t, f in zip(present, factors, strict=True):
            for p in self.heads[t].parameters():
                if p.grad is not None:
                    p.grad.mul_(float(f))


def _chain(net: MultiTaskNet, trunk: list[torch.nn.Parameter], tasks: int) -> ChainJacobian | None:
    """The written-out batched backward, where the trunk is an MLP chain it supports and
    there are enough tasks for it to pay."""
    chain = net.shared_chain()
    if chain is None or not len(chain) or tasks < MIN_TASKS or not all(supported(m) for m in chain):
        return None
    return ChainJacobian(chain, trunk)


def _gramian_fits(balancer: GradientBalancer, level: str, sync: StepSync | None) -> bool:
    """The Gramian engine serves parameter-level methods that need only the Gramian, in
    one process: with several, each has a share of every task gradient, and the Gramian
    of their sum is not the sum of their Gramians (the blocks are summed instead)."""
    return level == "parameters" and sync is None and not balancer.needs_matrix_at(level)


def losses_after(
    net: MultiTaskNet, tasks: list[Task], batch: Batch, sync: StepSync | None = None
) -> Callable[[], list[torch.Tensor]]:
    """A closure for :meth:`Balancer.after_update`: the batch's task losses at the
    updated parameters (FAMO's extra forward), tasks of one kind computed together
    (:mod:`polytask.tasks.grouped`), global values with several processes."""

    def closure() -> list[torch.Tensor]:
        with torch.inference_mode():
            outs = net.forward_list(*batch.inputs)
            losses = grouped_losses(tasks, outs, batch.targets, batch.masks)
            return losses if sync is None else sync.loss_values(losses, batch)

    return closure


def make_step(
    net: MultiTaskNet,
    tasks: list[Task],
    balancer: Balancer,
    level: str,
    sync: StepSync | None = None,
    precision: str = "fp32",
    device: torch.device | None = None,
) -> LossStep | GradientStep:
    """The step for ``balancer``; ``precision`` is ``training.precision`` on ``device``."""
    gradient_level = isinstance(balancer, GradientBalancer)
    amp = Precision(precision, device or torch.device("cpu"), gradient_level)
    if isinstance(balancer, GradientBalancer):
        composed = composing_task(tasks)
        if composed is not None:
            raise PolytaskError(
                f"task '{composed.name}' ({composed.kind}) is composed from task "
                f"'{composed.composes_with()[0]}''s output, so no task has a gradient "
                f"through its own head alone, which '{balancer.name}' needs; use a "
                "loss-level balancing method (ew, uw, dwa, famo, ...)"
            )
        return GradientStep(net, tasks, balancer, level, sync=sync, precision=amp)
    assert isinstance(balancer, LossBalancer)
    return LossStep(net, tasks, balancer, sync=sync, precision=amp)
