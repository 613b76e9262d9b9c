"""The plain MLP trunk (the default): Linear -> [norm] -> activation -> [dropout] per
width of ``model.hidden``. Its layers are those runs have always saved."""

from __future__ import annotations

from torch import nn

from polytask.encoders.mlp import mlp
from polytask.encoders.trunks.base import Trunk, TrunkOptions, TrunkSpec, with_width


class MLPTrunk(Trunk):
    name = "mlp"

    @classmethod
    def build(cls, spec: TrunkSpec, options: TrunkOptions) -> nn.Sequential:
        stack = mlp(spec.in_features, spec.hidden, spec.activation, spec.dropout, spec.norm)
        return with_width(stack, spec.hidden[-1] if spec.hidden else spec.in_features)
