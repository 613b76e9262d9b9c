"""Softmax gates over experts, and the gated task head of MMoE, CGC and PLE.

A gate turns its input ``u`` into weights ``softmax(W u + b)`` over the experts it
sees and returns their weighted sum (Ma et al. 2018, eq. 7-8; Tang et al. 2020, eq. 1-2).

Two defaults here decide whether the mixtures generalise (the runs behind them:
benchmarks/RESULTS.md, issue 13 part 4):

- ``gate_init="uniform"``: the gates start at ``W = 0, b = 0``, every expert weighted
  ``1/n`` for every row. ``nn.Linear``'s own initialisation (``"random"``) starts each
  gate as a random soft partition of the input space, so from the first step each expert
  trains mostly on its own random share of the rows and fits it. Started uniform, the
  experts first learn together what the tasks share, and the gates move away from
  uniform only as far as the tasks' gradients take them.
- :func:`expert_widths`: by default the experts are single layers (as in the MMoE
  paper's synthetic experiment) whose widths add up to the first width of
  ``model.hidden``, so a mixture has about the parameters of the hard-sharing trunk it
  is compared with (the papers compare at similar parameter counts). ``n`` copies of
  ``model.hidden``, the old default, gave a mixture ``n`` times the trunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from polytask.architectures.base import ArchitectureOptions
from polytask.architectures.parallel_mlp import ParallelMLP

GateInit = Literal["uniform", "random"]


class GatedOptions(ArchitectureOptions):
    #: "uniform": gates start at zero weights, every expert weighted 1/n for every row;
    #: "random": nn.Linear's initialisation (a random input-dependent mixture from the start)
    gate_init: GateInit = "uniform"


def expert_widths(hidden: Sequence[int], experts: int) -> list[int]:
    """The default widths of each of ``experts`` experts: one layer, the first width of
    ``model.hidden`` shared out among them (at least 1 each), so that together they have
    the trunk's first layer's weights; ``[]`` when ``hidden`` is empty (the architecture
    then says which option to set)."""
    return [max(1, hidden[0] // experts)] if hidden else []


def make_gate(in_features: int, experts: int, init: GateInit = "uniform") -> nn.Linear | None:
    """The gate's linear layer; None for a single expert (its weight is always 1)."""
    if experts <= 1:
        return None
    gate = nn.Linear(in_features, experts)
    if init == "uniform":
        nn.init.zeros_(gate.weight)
        nn.init.zeros_(gate.bias)
    return gate


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
        gate_init: GateInit = "uniform",
    ):
        super().__init__()
        self.start, self.stop, self.shared, self.width = start, stop, shared, width
        self.own = own
        n = shared + (own.n if own is not None else 0)
        self.gate = make_gate(stop - start, n, gate_init)
        self.tower = tower

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        u = rep[:, self.start : self.stop]
        experts = rep[:, rep.shape[1] - self.shared * self.width :].reshape(
            rep.shape[0], self.shared, self.width
        )
        if self.own is not None:
            experts = torch.cat([self.own(u), experts], dim=1)
        return self.tower(mix(self.gate, u, experts))
