"""The encoder of a multi-source model: each source's inputs through that source's own
encoder and first layer, then shared layers for all. Its first input is the source index
(see :class:`polytask.features.sources.SourceBatch`), so every architecture works on top
of it unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from polytask.encoders.mlp import mlp
from polytask.encoders.protocol import Encoder


class SourceRouter(nn.Module):
    """(source, *that source's inputs) -> (N, out_features)."""

    #: the representation is a vector (see :class:`polytask.encoders.protocol.Encoder`)
    spatial = False

    def __init__(
        self,
        encoders: Sequence[Encoder],
        width: int,
        hidden: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
    ):
        super().__init__()
        # every encoder is a module; the protocol names what architectures read of it
        self.encoders = nn.ModuleList(encoders)  # type: ignore[arg-type]
        # each source's own first layer maps its features to the shared width
        self.adapters = nn.ModuleList(
            mlp(int(cast(int, e.out_features)), [width], activation, dropout, norm)
            for e in encoders
        )
        self.trunk = mlp(width, hidden, activation, dropout, norm)
        self.out_features = hidden[-1] if hidden else width

    def forward(self, source: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        s = int(source)
        return self.trunk(self.adapters[s](self.encoders[s](*inputs)))
