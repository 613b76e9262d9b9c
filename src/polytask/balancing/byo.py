"""Balancing in a researcher's own training loop: :func:`backward`.

The trainer's step needs polytask's model protocol; this needs only the task losses,
the shared parameters and (better) the shared representation the heads read. It fills
``.grad`` as the trainer's step would: the shared parameters get the method's update,
every other parameter the losses reach (the heads) the gradient of Σ_t f_t L_t with
f_t = 1 (or the step's coefficient, or 1 / L_t, as the method trains its heads).

Missing losses are normal: a NaN loss, or ``mask[t]`` False, sits the step out. With
several processes (``torch.distributed`` initialised) the per-task gradients are summed
across processes before the method sees them and the heads' gradients after, as the
trainer does (:mod:`polytask.training.distributed`): every process writes the same
update. Each process's loss is weighted by its share of the task's labelled rows
(``counts``; default one per process that has the task).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from polytask.balancing.base import Balancer, GradientBalancer, LossBalancer
from polytask.balancing.gramian import GramianEngine, GramianJacobian
from polytask.balancing.jacobian import (
    DEFAULT_MEMORY_BOUND,
    RepresentationJacobian,
    TaskJacobian,
    TrunkJacobian,
    trunk_jacobian_blocks,
)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _shares(losses: list[torch.Tensor], mask: Sequence[bool], counts: Sequence[float] | None):
    """Per task: this process's share of the task's global gradient, and whether any
    process has the task (one small all-reduce with several processes)."""
    n = torch.tensor(
        [float(c) if m else 0.0 for c, m in zip(counts or [1.0] * len(losses), mask, strict=True)],
        dtype=torch.float64,
    )
    total = n.clone()
    if _world() > 1:
        dist.all_reduce(total)
    share = torch.where(total > 0, n / total.clamp_min(1e-300), torch.zeros_like(n))
    return share.tolist(), [i for i, v in enumerate(total.tolist()) if v > 0]


def _heads(losses: list[torch.Tensor], stop: torch.Tensor | None, shared: set[int]) -> list:
    """The leaves the losses reach without passing through ``stop`` (the representation),
    other than the shared parameters: the heads."""
    found, seen = [], set()
    nodes = [loss.grad_fn for loss in losses if loss.grad_fn is not None]
    stop_fn = stop.grad_fn if stop is not None else None
    while nodes:
        node = nodes.pop()
        if node is None or id(node) in seen or node is stop_fn:
            continue
        seen.add(id(node))
        var = getattr(node, "variable", None)
        if var is not None and id(var) not in shared and var.requires_grad:
            found.append(var)
        nodes.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return found


def _jacobian(
    scaled: list[torch.Tensor],
    present: list[int],
    shared: list[nn.Parameter],
    rep: torch.Tensor | None,
    level: str,
    engine: GramianEngine | None,
    gram_only: bool,
) -> TaskJacobian:
    local = [t for t in present if scaled[t].requires_grad]
    if rep is None:
        rows = []
        for t in present:
            grads = (
                torch.autograd.grad(scaled[t], shared, retain_graph=True, allow_unused=True)
                if t in local
                else [None] * len(shared)
            )
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(grads, shared, strict=True)
                    ]
                )
            )
        matrix = torch.stack(rows)
        blocks = list(matrix.split([p.numel() for p in shared], dim=1))
        return _summed(TrunkJacobian(shared, blocks))
    rows = []
    for t in present:
        g = None
        if t in local:
            g = torch.autograd.grad(scaled[t], rep, retain_graph=True, allow_unused=True)[0]
        rows.append(g if g is not None else torch.zeros_like(rep))
    rep_grads = torch.stack(rows)
    if level == "representation":
        if _world() > 1 and not gram_only:
            raise ValueError(
                "with several processes, methods that need the whole matrix work at "
                "level='parameters' only"
            )
        return _SummedRows(rep, rep_grads)
    if engine is not None and gram_only and _world() == 1:
        gram = engine.gramian(rep, rep_grads)[0]
        return GramianJacobian(rep, rep_grads, gram, shared)
    blocks = trunk_jacobian_blocks(rep, shared, rep_grads, DEFAULT_MEMORY_BOUND, retain_graph=True)
    return _summed(TrunkJacobian(shared, blocks))


class _SummedRows(RepresentationJacobian):
    """Rows at the representation, one process's samples each: the Gramian is a sum over
    rows, so it is summed across processes; the gradients below are summed after."""

    def _compute_gram(self) -> torch.Tensor:
        gram = super()._compute_gram()
        if _world() > 1:
            dist.all_reduce(gram)
        return gram


def _summed(jac: TrunkJacobian) -> TrunkJacobian:
    if _world() > 1:
        flat = torch.cat([b.reshape(-1) for b in jac.blocks])
        dist.all_reduce(flat)
        parts = flat.split([b.numel() for b in jac.blocks])
        jac.blocks = [p.view_as(b) for p, b in zip(parts, jac.blocks, strict=True)]
    return jac


def _sum_grads(params: Sequence[torch.Tensor]) -> None:
    if _world() == 1 or not params:
        return
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    )
    dist.all_reduce(flat)
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = g.view_as(p).clone()


def backward(
    losses: Sequence[torch.Tensor] | torch.Tensor,
    shared: Iterable[nn.Parameter],
    method: str | Balancer = "upgrad",
    representation: torch.Tensor | None = None,
    mask: Sequence[bool] | torch.Tensor | None = None,
    counts: Sequence[float] | None = None,
    level: str = "parameters",
    engine: GramianEngine | None = None,
) -> torch.Tensor:
    """Fill ``.grad`` with the update of ``method`` for the task ``losses`` (T scalars)
    and return the (T,) weights it used (0 for a task that sat out; NaN where the method
    has none: a direction built coordinate by coordinate, such as GradDrop's).

    ``shared``: the parameters every task reaches. ``representation``: the tensor the
    heads read (per-task gradients are then taken through each head alone and pushed
    through the trunk in one batched backward; without it, one backward per task).
    ``level="representation"`` combines the gradients at the representation instead
    (MGDA-UB). ``engine``: a :class:`~polytask.balancing.gramian.GramianEngine` whose
    ``recording()`` held the forward to the representation, for methods that need only
    the Gramian (one process). A ``method`` given by name is a fresh object each call:
    pass ``polytask.balancing.get(...)`` once for methods with state across steps."""
    from polytask.balancing import get

    balancer = get(method) if isinstance(method, str) else method
    items = list(losses.unbind()) if isinstance(losses, torch.Tensor) else list(losses)
    flags = [True] * len(items) if mask is None else [bool(m) for m in mask]
    flags = [f and bool(torch.isfinite(v.detach())) for f, v in zip(flags, items, strict=True)]
    share, present = _shares(items, flags, counts)
    zero = items[0].new_zeros(())
    scaled = [v * s if f else zero for v, s, f in zip(items, share, flags, strict=True)]
    params = [p for p in shared if p.requires_grad]
    heads = _heads([scaled[t] for t in present], representation, {id(p) for p in params})
    if not balancer.task_names:
        balancer.setup([str(i) for i in range(len(items))])
    if isinstance(balancer, LossBalancer):
        torch.autograd.backward(balancer.combine(scaled), inputs=params + heads)
        _sum_grads(params + heads)
        w = balancer.weights()
        return torch.tensor([w.get(n, 1.0) for n in balancer.task_names], dtype=torch.float64)
    assert isinstance(balancer, GradientBalancer)
    weights = torch.zeros(len(items), dtype=torch.float64)
    if not present:
        return weights
    gram_only = not balancer.needs_matrix_at(level)
    jac = _jacobian(scaled, present, params, representation, level, engine, gram_only)
    values = _global_values([scaled[t] for t in present])
    coef = balancer.update(jac, present, values if balancer.needs_losses else None, level)
    if level == "representation":
        _sum_grads(params)
    _train_heads(balancer, [scaled[t] for t in present], heads, coef, values)
    if coef is None:
        return weights + torch.nan
    weights[present] = torch.as_tensor(np.asarray(coef, dtype=np.float64))
    return weights


def _global_values(scaled: list[torch.Tensor]) -> np.ndarray:
    """The task losses of the whole batch: the sum of each process's scaled loss."""
    values = torch.stack([v.detach() for v in scaled]).to(torch.float64)
    if _world() > 1:
        dist.all_reduce(values)
    return values.cpu().numpy()


def _train_heads(
    balancer: GradientBalancer,
    scaled: list[torch.Tensor],
    heads: list[torch.Tensor],
    coef: np.ndarray | None,
    values: np.ndarray,
) -> None:
    """The heads' gradients: Σ f_t L_t with f_t as the method trains its heads (as
    :meth:`polytask.training.steps.GradientStep._scale_heads`), summed across processes."""
    how = balancer.head_loss
    if how == "weighted" and coef is not None:
        factors = [float(c) for c in coef]
    elif how == "log":
        factors = [float(f) for f in 1.0 / np.maximum(values, 1e-12)]
    else:
        factors = [1.0] * len(scaled)
    total = sum((v * f for v, f in zip(scaled, factors, strict=True)), scaled[0].new_zeros(()))
    if heads and total.requires_grad:
        torch.autograd.backward(total, inputs=heads)
    _sum_grads(heads)
