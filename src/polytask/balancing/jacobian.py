"""The Jacobian engine: per-task gradients without T full backward passes.

Each task's head is applied to its own detached alias of the shared representation, so
one backward pass of the summed head losses yields every task's gradient with respect to
the representation (through its own head only, no T² zero-gradient traffic) and gives
every head its own task's gradient, as usual. When every head is one linear layer the
heads run as one matrix product instead and task t's representation gradient is
D_t W_t, from the gradient D_t at its output (an outer product for one-output heads).

- ``representation`` level: aggregate the (T, N·H) representation gradients and
  backpropagate the result once through the trunk (MGDA with this is MGDA-UB).
- ``parameters`` level: push the T representation gradients through the trunk in one
  batched backward (``is_grads_batched``, chunked under a memory bound; for an MLP trunk
  and 4 tasks or more, written out by hand in :mod:`polytask.balancing.chain_jacobian`),
  take the T x T Gramian block by block, and write c @ G into the trunk's ``.grad``. The
  (T, P) matrix is concatenated only for methods that need it whole (GradDrop, DB-MTL).

Whichever way they were taken, the step hands the method one :class:`TaskJacobian`
(Gramian, matrix, rank-one factors where there are some, and the way back to ``.grad``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: bytes the (T, P) trunk Jacobian may take before it is built in chunks of tasks
DEFAULT_MEMORY_BOUND = 256 * 2**20


@dataclass
class SplitForward:
    losses: list[torch.Tensor]  # per task, scalar, attached to the heads only
    rep: torch.Tensor  # shared representation, attached to the trunk
    aliases: list[torch.Tensor]  # per-task leaves sharing rep's storage


def split_forward(
    rep: torch.Tensor,
    heads: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    losses_of: Callable[[list[torch.Tensor]], list[torch.Tensor]],
) -> SplitForward:
    aliases = [rep.detach().requires_grad_() for _ in heads]
    outs = [head(a) for head, a in zip(heads, aliases, strict=True)]
    return SplitForward(losses_of(outs), rep, aliases)


def representation_gradients(
    split: SplitForward, present: list[int], task_dim: int = 0
) -> torch.Tensor:
    """Backward through the heads (their .grad filled) -> (len(present), *rep.shape), or
    the tasks at ``task_dim``."""
    total = split.losses[0]
    for loss in split.losses[1:]:
        total = total + loss
    total.backward()
    zeros = None
    grads = []
    for t in present:
        g = split.aliases[t].grad
        if g is None:  # a head that does not use the representation
            zeros = torch.zeros_like(split.rep) if zeros is None else zeros
            g = zeros
        grads.append(g)
    return torch.stack(grads, dim=task_dim)


def trunk_jacobian_blocks(
    rep: torch.Tensor,
    params: list[torch.nn.Parameter],
    rep_grads: torch.Tensor,
    memory_bound: int = DEFAULT_MEMORY_BOUND,
    retain_graph: bool = False,
) -> list[torch.Tensor]:
    """Per trunk parameter, the (T, numel) gradients of the T representation gradients,
    from batched backward passes (``is_grads_batched``) in chunks of tasks that keep
    vmap's buffers under ``memory_bound`` bytes. (A loop of T backward passes does the
    same dense products; on a 2-core CPU the two measured within noise of each other,
    9-14 ms at T = 20 for trunk 64-256-256, batch 256.)"""
    t = rep_grads.shape[0]
    n_params = sum(p.numel() for p in params)
    per_row = n_params * rep_grads.element_size() * 2  # the rows and vmap's buffers
    chunk = max(1, min(t, memory_bound // max(per_row, 1)))
    parts: list[list[torch.Tensor]] = []
    for s in range(0, t, chunk):
        part = rep_grads[s : s + chunk]
        grads = torch.autograd.grad(
            rep,
            params,
            grad_outputs=part,
            is_grads_batched=True,
            retain_graph=retain_graph or s + chunk < t,
            allow_unused=True,
        )
        parts.append(
            [
                (
                    g
                    if g is not None
                    else torch.zeros(part.shape[0], *p.shape, device=p.device, dtype=part.dtype)
                ).reshape(part.shape[0], -1)
                for g, p in zip(grads, params, strict=True)
            ]
        )
    if len(parts) == 1:
        return parts[0]
    return [torch.cat(blocks) for blocks in zip(*parts, strict=True)]


def blocks_gramian(blocks: list[torch.Tensor]) -> torch.Tensor:
    gram = blocks[0] @ blocks[0].T
    for b in blocks[1:]:
        gram.addmm_(b, b.T)
    return gram


def write_blocks(
    params: list[torch.nn.Parameter], blocks: list[torch.Tensor], coef: torch.Tensor
) -> None:
    """p.grad = c @ block for every trunk parameter."""
    for p, b in zip(params, blocks, strict=True):
        p.grad = (coef @ b).view_as(p)


def write_grad(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    """Write a flat (P,) gradient into the parameters' .grad (replacing what was there)."""
    offset = 0
    for p in params:
        n = p.numel()
        g = flat[offset : offset + n].view_as(p)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
        offset += n


def outer_rep_gradients(
    out_grads: list[torch.Tensor],
    weights: list[torch.Tensor],
    task_dim: int = 0,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The representation gradients D_t W_t of linear heads, from the gradients D_t
    (N, k_t) at their outputs and their weights W_t (k_t, H): (T, N, H), or (N, T, H)
    with ``task_dim=1``; written into ``out`` when given (one output per head)."""
    if all(g.shape[1] == 1 for g in out_grads):  # one output each: outer products
        d = torch.cat(out_grads, dim=1)  # (N, T)
        w = torch.cat(weights)  # (T, H)
        if task_dim == 1:
            return torch.mul(d[:, :, None], w[None, :, :], out=out)
        return torch.mul(d.T.contiguous()[:, :, None], w[:, None, :], out=out)
    return torch.stack([g @ w for g, w in zip(out_grads, weights, strict=True)], dim=task_dim)


def linear_head_gramian(
    out_grads: list[torch.Tensor], weights: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gramian of the representation gradients J_t = D_t W_t of linear heads, without
    forming them: <D_s W_s, D_t W_t> = Σ_ij (D_sᵀ D_t)_ij (W_s W_tᵀ)_ij.

    ``out_grads`` are the D_t (N, k_t), ``weights`` the W_t (k_t, H). Returns the (T, T)
    Gramian and the concatenations D (N, Σk) and W (Σk, H), from which the combined
    representation gradient Σ c_t D_t W_t is one matrix product."""
    d = torch.cat(out_grads, dim=1)
    w = torch.cat(weights, dim=0)
    e = (d.T @ d) * (w @ w.T)
    sizes = [g.shape[1] for g in out_grads]
    if all(k == 1 for k in sizes):
        return e, d, w
    owner = torch.repeat_interleave(
        torch.arange(len(sizes), device=e.device), torch.tensor(sizes, device=e.device)
    )
    s = torch.zeros(len(sizes), e.shape[0], dtype=e.dtype, device=e.device)
    s[owner, torch.arange(e.shape[0], device=e.device)] = 1.0
    return s @ e @ s.T, d, w


def cosine_from_gram(gram: torch.Tensor) -> torch.Tensor:
    norms = gram.diagonal().clamp_min(0).sqrt()
    denom = norms[:, None] * norms[None, :]
    return torch.where(denom > 0, gram / denom.clamp_min(1e-30), torch.zeros_like(gram))


def pairwise_cosine(matrix: torch.Tensor) -> torch.Tensor:
    """(T, T) cosine similarity of the rows (0 where a row is zero)."""
    return cosine_from_gram(matrix @ matrix.T)


def as_coefficients(coef: np.ndarray | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(coef, dtype=like.dtype, device=like.device)


class TaskJacobian:
    """The T task gradients of one step, in the form the engine that took them has.

    A method reads what it needs: the (T, T) Gramian (every Gramian method), the (T, P)
    matrix (methods that look at coordinates), or the rank-one factors (d, w) with
    g_t = vec(d_t w_tᵀ) where the engine has them (linear one-output heads). The update
    goes back through :meth:`apply` (coefficients c: Σ c_t g_t) or :meth:`write` (a
    direction the method built). The Gramian is computed once and shared, so the logged
    gradient cosines come from it too."""

    _gram: torch.Tensor | None = None

    def gram(self) -> torch.Tensor:
        if self._gram is None:
            self._gram = self._compute_gram()
        return self._gram

    def _compute_gram(self) -> torch.Tensor:
        m = self.matrix()
        return m @ m.T

    def matrix(self) -> torch.Tensor:
        raise NotImplementedError

    def factors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(d (T, N), w (T, H)) with g_t = vec(d_t w_tᵀ), or None (no rank-one form)."""
        return None

    def apply(self, coef: np.ndarray | torch.Tensor) -> None:
        self.write(as_coefficients(coef, self.matrix()) @ self.matrix())

    def write(self, direction: torch.Tensor) -> None:
        raise NotImplementedError


class MatrixJacobian(TaskJacobian):
    """A given (T, P) matrix (``aggregate``): the update is kept in :attr:`result`."""

    def __init__(self, matrix: torch.Tensor):
        self._matrix = matrix
        self.result: torch.Tensor | None = None

    def matrix(self) -> torch.Tensor:
        return self._matrix

    def write(self, direction: torch.Tensor) -> None:
        self.result = direction


class RepresentationJacobian(TaskJacobian):
    """Rows (T, *rep.shape) at the representation: the update is back-propagated once
    through the trunk."""

    def __init__(self, rep: torch.Tensor, rows: torch.Tensor | None):
        self.rep, self._rows = rep, rows

    @property
    def rows(self) -> torch.Tensor:
        assert self._rows is not None
        return self._rows

    def matrix(self) -> torch.Tensor:
        return self.rows.reshape(self.rows.shape[0], -1)

    def write(self, direction: torch.Tensor) -> None:
        self.rep.backward(direction.view_as(self.rep))


class LinearHeadJacobian(RepresentationJacobian):
    """Linear heads at the representation: J_t = D_t W_t from the gradients D_t at the
    heads' outputs, so the Gramian and Σ c_t J_t need no (T, N, H) tensor
    (:func:`linear_head_gramian`); the rows are formed only when a method asks."""

    def __init__(
        self, rep: torch.Tensor, out_grads: list[torch.Tensor], weights: list[torch.Tensor]
    ):
        super().__init__(rep, None)
        self.out_grads, self.weights = out_grads, weights
        self._dw: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def rows(self) -> torch.Tensor:
        if self._rows is None:
            self._rows = outer_rep_gradients(self.out_grads, self.weights)
        return self._rows

    def _compute_gram(self) -> torch.Tensor:
        gram, d, w = linear_head_gramian(self.out_grads, self.weights)
        self._dw = d, w
        return gram

    def factors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if any(g.shape[1] != 1 for g in self.out_grads):
            return None
        return torch.cat(self.out_grads, dim=1).T, torch.cat(self.weights)

    def apply(self, coef: np.ndarray | torch.Tensor) -> None:
        self.gram()
        assert self._dw is not None
        d, w = self._dw
        sizes = [g.shape[1] for g in self.out_grads]
        scale = torch.repeat_interleave(
            as_coefficients(coef, d), torch.tensor(sizes, device=d.device)
        )
        self.rep.backward((d * scale) @ w)


class TrunkJacobian(TaskJacobian):
    """Per shared parameter, its (T, numel) block: the Gramian is Σ_blocks B Bᵀ and
    coefficients are written block by block; the (T, P) matrix is concatenated only when
    a method asks (by the chain Jacobian, into its reused buffer, when it took them)."""

    def __init__(
        self,
        params: list[torch.nn.Parameter],
        blocks: list[torch.Tensor],
        concat: Callable[[list[torch.Tensor]], torch.Tensor] | None = None,
    ):
        self.params, self.blocks = params, blocks
        self._concat = concat or (lambda blocks: torch.cat(blocks, dim=1))

    def _compute_gram(self) -> torch.Tensor:
        return blocks_gramian(self.blocks)

    def matrix(self) -> torch.Tensor:
        return self._concat(self.blocks)

    def apply(self, coef: np.ndarray | torch.Tensor) -> None:
        write_blocks(self.params, self.blocks, as_coefficients(coef, self.blocks[0]))

    def write(self, direction: torch.Tensor) -> None:
        write_grad(self.params, direction)
