"""A ResNet-like MLP (Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular
Data", section 3.2): a linear map to width ``d``, then blocks

    x + Dropout(Linear(Dropout(ReLU(Linear(Norm(x))))))

and a final Norm -> activation, whose output is the representation (the paper's
prediction head is Norm -> ReLU -> Linear; the task heads are that last Linear).

``d`` is ``model.hidden[0]``; the inner width is ``d_hidden_factor * d``; the inner
dropout is ``model.dropout`` and the residual one ``residual_dropout``; ``model.norm``
and ``model.activation`` keep their meaning."""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import nn

from polytask.encoders.mlp import ACTIVATIONS
from polytask.encoders.trunks.base import Trunk, TrunkOptions, TrunkSpec, norm_layer, with_width
from polytask.errors import PolytaskError


class ResNetOptions(TrunkOptions):
    #: number of residual blocks
    n_blocks: PositiveInt = 2
    #: the blocks' inner width as a multiple of model.hidden[0]
    d_hidden_factor: float = Field(2.0, gt=0)
    #: dropout on each block's output before it is added to the residual stream
    residual_dropout: float = Field(0.0, ge=0, lt=1)


class ResBlock(nn.Module):
    def __init__(self, d: int, inner: int, spec: TrunkSpec, residual_dropout: float):
        super().__init__()
        self.norm = norm_layer(spec.norm, d)
        self.linear1 = nn.Linear(d, inner)
        self.activation = ACTIVATIONS[spec.activation]()
        self.dropout = nn.Dropout(spec.dropout)
        self.linear2 = nn.Linear(inner, d)
        self.residual_dropout = nn.Dropout(residual_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.activation(self.linear1(self.norm(x))))
        return x + self.residual_dropout(self.linear2(h))


class ResNetTrunk(Trunk):
    name = "resnet"
    Options = ResNetOptions

    @classmethod
    def build(cls, spec: TrunkSpec, options: TrunkOptions) -> nn.Sequential:
        assert isinstance(options, ResNetOptions)
        if not spec.hidden:
            raise PolytaskError(
                "trunk 'resnet' takes its width from model.hidden[0]; set model.hidden "
                "(e.g. --hidden 128)"
            )
        d = spec.hidden[0]
        inner = max(1, round(options.d_hidden_factor * d))
        blocks = [
            ResBlock(d, inner, spec, options.residual_dropout) for _ in range(options.n_blocks)
        ]
        stack = nn.Sequential(
            nn.Linear(spec.in_features, d),
            *blocks,
            norm_layer(spec.norm, d),
            ACTIVATIONS[spec.activation](),
        )
        return with_width(stack, d)
