"""The Jacobian engine: per-task gradients without T full backward passes.

Each task's head is applied to its own detached alias of the shared representation, so
one backward pass of the summed head losses yields every task's gradient with respect to
the representation (through its own head only, no T² zero-gradient traffic) and gives
every head its own task's gradient, as usual.

- ``representation`` level: aggregate the (T, N·H) representation gradients and
  backpropagate the result once through the trunk (MGDA with this is MGDA-UB).
- ``parameters`` level: push the T representation gradients through the trunk in one
  batched backward (``is_grads_batched``, chunked under a memory bound), aggregate the
  (T, P) matrix of trunk-parameter gradients and write the result into ``.grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def representation_gradients(split: SplitForward, present: list[int]) -> torch.Tensor:
    """Backward through the heads (their .grad filled) -> (len(present), *rep.shape)."""
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
    return torch.stack(grads)


def trunk_jacobian(
    rep: torch.Tensor,
    params: list[torch.nn.Parameter],
    rep_grads: torch.Tensor,
    memory_bound: int = DEFAULT_MEMORY_BOUND,
) -> torch.Tensor:
    """(T, P) gradients of the trunk parameters, one row per representation gradient."""
    t = rep_grads.shape[0]
    n_params = sum(p.numel() for p in params)
    per_row = n_params * rep_grads.element_size() * 3  # the rows, the vmap buffers, the cat
    chunk = max(1, min(t, memory_bound // max(per_row, 1)))
    rows = []
    for s in range(0, t, chunk):
        part = rep_grads[s : s + chunk]
        last = s + chunk >= t
        grads = torch.autograd.grad(
            rep,
            params,
            grad_outputs=part,
            is_grads_batched=True,
            retain_graph=not last,
            allow_unused=True,
        )
        rows.append(
            torch.cat(
                [
                    (
                        g
                        if g is not None
                        else torch.zeros(part.shape[0], *p.shape, device=p.device)
                    ).reshape(part.shape[0], -1)
                    for g, p in zip(grads, params, strict=True)
                ],
                dim=1,
            )
        )
    return rows[0] if len(rows) == 1 else torch.cat(rows)


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
    gram = matrix @ matrix.T
    norms = gram.diagonal().clamp_min(0).sqrt()
    denom = norms[:, None] * norms[None, :]
    return torch.where(denom > 0, gram / denom.clamp_min(1e-30), torch.zeros_like(gram))
