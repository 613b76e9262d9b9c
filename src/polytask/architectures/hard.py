"""Hard parameter sharing: one shared encoder, one head per task."""

from __future__ import annotations

import torch
from torch import nn

from polytask.architectures.base import (
    ArchitectureSpec,
    MultiTaskNet,
    dense_needs_image,
    fused_linear,
    init_head_bias,
)
from polytask.encoders.cnn import ConvDecoder, GridPool
from polytask.encoders.mlp import mlp
from polytask.encoders.protocol import Encoder, spatial


class HardSharing(MultiTaskNet):
    name = "hard"
    encoder: Encoder

    def __init__(self, spec: ArchitectureSpec):
        super().__init__(spec)
        self.encoder = encoder = spec.encoder
        head_hidden, activation, dropout = list(spec.head_hidden), spec.activation, spec.dropout
        width = encoder.out_features
        heads: dict[str, nn.Module] = {}
        conv = spatial(encoder)
        for task in spec.tasks:
            if task.dense:
                if conv is None:
                    raise dense_needs_image(task)
                heads[task.name] = ConvDecoder(
                    width, task.output_size, conv.strides, conv.size, activation
                )
                continue
            pool = [GridPool(conv.pool)] if conv is not None else []
            n_in = width * conv.pool**2 if conv is not None else width
            body = mlp(n_in, head_hidden, activation, dropout)
            last = nn.Linear(head_hidden[-1] if head_hidden else n_in, task.output_size)
            head = nn.Sequential(*pool, *body, last)
            init_head_bias(head, task)
            heads[task.name] = head
        self._set_heads(heads)
        #: every head's only layer when each is one linear layer (found once: heads are fixed)
        layers = [list(h.children()) for h in self._head_list]
        self._linear: list[nn.Linear] | None = None
        if all(len(ms) == 1 and isinstance(ms[0], nn.Linear) for ms in layers):
            self._linear = [m for ms in layers for m in ms if isinstance(m, nn.Linear)]

    def representation(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(*inputs)

    def shared_chain(self) -> nn.Sequential | None:
        trunk = self.encoder.trunk
        return trunk if trunk is not None and len(trunk) else None

    def linear_heads(self) -> list[nn.Linear] | None:
        return self._linear

    def heads_forward(self, rep: torch.Tensor) -> list[torch.Tensor]:
        linear = self._linear
        if linear and not torch.is_grad_enabled() and len(linear) > 2 and rep.dim() == 2:
            # inference: all linear heads in one matrix product
            out = fused_linear(linear, rep)
            return list(out.split([h.out_features for h in linear], dim=1))
        return super().heads_forward(rep)
