"""TabM-style parameter-efficient ensembles (Gorishniy et al. 2024, "TabM: Advancing
Tabular Deep Learning with Parameter-Efficient Ensembling"): ``k`` MLPs that share every
weight matrix, each with its own BatchEnsemble adapters (Wen et al. 2020). Member m's
layer is

    y_m = ((x_m ∘ r_m) W) ∘ s_m + b_m

with W shared and r_m, s_m, b_m its own; then ``model.norm``, the activation and
dropout, per width of ``model.hidden``. As in the paper's TabM, the first layer's r_m
start at random ±1 (that is what makes the members differ) and every other adapter at 1.

Where this departs from the paper: the members are averaged at the representation,
``rep = mean_m h_m`` (N, hidden[-1]), and the task heads read that one vector. With the
default linear heads this is exactly the mean of k member predictions made with shared
heads, but training minimises the loss of the mean prediction, where the paper trains
the mean of the k members' losses (each member its own head). Averaging at the
representation keeps the representation split truthful (one representation, one head
per task; :class:`polytask.architectures.base.MultiTaskNet`) and lets every balancer
and both Jacobian levels work unchanged. benchmarks/RESULTS.md (issue 16, point 2)
measures it against the plain MLP."""

from __future__ import annotations

import math

import torch
from pydantic import PositiveInt
from torch import nn

from polytask.encoders.mlp import ACTIVATIONS
from polytask.encoders.trunks.base import Trunk, TrunkOptions, TrunkSpec, with_width
from polytask.errors import PolytaskError


class TabMOptions(TrunkOptions):
    #: number of ensemble members (the paper's default is 32)
    k: PositiveInt = 32


class MemberAffine(nn.Module):
    """Per member, ``x ∘ weight_m (+ bias_m)``: (N, in) or (N, k, in) -> (N, k, in)."""

    def __init__(self, k: int, width: int, bias: bool, signs: bool = False):
        super().__init__()
        weight = torch.ones(k, width)
        if signs:
            weight = torch.randint(0, 2, (k, width)).float() * 2 - 1
        self.weight = nn.Parameter(weight)
        self.bias: nn.Parameter | None = None
        if bias:
            bound = 1 / math.sqrt(width)
            self.bias = nn.Parameter(torch.empty(k, width).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.unsqueeze(1) if x.dim() == 2 else x) * self.weight
        return y + self.bias if self.bias is not None else y

    @staticmethod
    def gramian_rule(
        module: nn.Module, x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool
    ) -> torch.Tensor:
        """The Gramian engine's layer rule: weight rows Σ_n g ∘ x, bias rows Σ_n g."""
        t = g.shape[0]
        gram = g.new_zeros(t, t)
        if want_w:
            rows = (g * (x.unsqueeze(1) if x.dim() == 2 else x)).sum(1).reshape(t, -1)
            gram += rows @ rows.T
        if want_b:
            rows = g.sum(1).reshape(t, -1)
            gram += rows @ rows.T
        return gram


class FlatBatchNorm(nn.Module):
    """``BatchNorm1d`` over every member's rows: (N, k, w) is normalised as (N·k, w)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.reshape(-1, x.shape[-1])).view_as(x)


class MemberMean(nn.Module):
    """(N, k, w) -> (N, w): the members' mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


def _layer(k: int, width: int, out: int, spec: TrunkSpec, first: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        MemberAffine(k, width, bias=False, signs=first),
        nn.Linear(width, out, bias=False),
        MemberAffine(k, out, bias=True),
    ]
    if spec.norm == "layer":
        layers.append(nn.LayerNorm(out))
    elif spec.norm == "batch":
        layers.append(FlatBatchNorm(out))
    layers.append(ACTIVATIONS[spec.activation]())
    if spec.dropout > 0:
        layers.append(nn.Dropout(spec.dropout))
    return layers


class TabMTrunk(Trunk):
    name = "tabm"
    Options = TabMOptions

    @classmethod
    def build(cls, spec: TrunkSpec, options: TrunkOptions) -> nn.Sequential:
        assert isinstance(options, TabMOptions)
        if not spec.hidden:
            raise PolytaskError(
                "trunk 'tabm' needs the widths of its layers: set model.hidden (e.g. --hidden 128)"
            )
        layers: list[nn.Module] = []
        width = spec.in_features
        for i, out in enumerate(spec.hidden):
            layers += _layer(options.k, width, out, spec, first=i == 0)
            width = out
        return with_width(nn.Sequential(*layers, MemberMean()), width)
