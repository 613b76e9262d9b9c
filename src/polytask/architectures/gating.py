"""Softmax gates over experts, and the gated task head of MMoE, CGC and PLE.

A gate turns its input ``u`` into weights ``softmax(W u + b)`` over the experts it
sees and returns their weighted sum (Ma et al. 2018, eq. 7-8; Tang et al. 2020, eq. 1-2).
"""

from __future__ import annotations

import torch
from torch import nn

from polytask.architectures.parallel_mlp import ParallelMLP


def make_gate(in_features: int, experts: int) -> nn.Linear | None:
    """The gate's linear layer; None for a single expert (its weight is always 1)."""
    return nn.Linear(in_features, experts) if experts > 1 else None


def mix(gate: nn.Linear | None, u: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate input ``u`` (N, D), expert outputs (N, n, H) -> weighted sum (N, H)."""
    if gate is None:
        return experts[:, 0]
    weights = torch.softmax(gate(u), dim=-1)
    return torch.bmm(weights.unsqueeze(1), experts).squeeze(1)


class GatedHead(nn.Module):
    """One task's head: its own experts (optional), its gate over [own, shared] experts,
    and its tower. It reads two parts of the representation ``rep`` (N, R): the gate's
    input ``rep[:, start:stop]`` (also the input of the task's own experts) and the
    shared experts' outputs, the last ``shared * width`` columns."""

    def __init__(
        self,
        start: int,
        stop: int,
        shared: int,
        width: int,
        own: ParallelMLP | None,
        tower: nn.Module,
    ):
        super().__init__()
        self.start, self.stop, self.shared, self.width = start, stop, shared, width
        self.own = own
        self.gate = make_gate(stop - start, shared + (own.n if own is not None else 0))
        self.tower = tower

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        u = rep[:, self.start : self.stop]
        experts = rep[:, rep.shape[1] - self.shared * self.width :].reshape(
            rep.shape[0], self.shared, self.width
        )
        if self.own is not None:
            experts = torch.cat([self.own(u), experts], dim=1)
        return self.tower(mix(self.gate, u, experts))
