"""Hard parameter sharing: one shared encoder, one head per task."""

from __future__ import annotations

import torch
from torch import nn

from polytask.architectures.base import (
    MultiTaskNet,
    dense_needs_image,
    fused_linear,
    init_head_bias,
)
from polytask.encoders.cnn import ConvDecoder, GridPool
from polytask.encoders.mlp import mlp
from polytask.tasks import Task


class HardSharing(MultiTaskNet):
    def __init__(
        self,
        encoder: nn.Module,
        tasks: list[Task],
        head_hidden: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
        options: object = None,
    ):
        super().__init__()
        self.encoder = encoder
        width = encoder.out_features
        heads = {}
        spatial = getattr(encoder, "spatial", False)
        for task in tasks:
            if task.dense:
                if not spatial:
                    raise dense_needs_image(task)
                heads[task.name] = ConvDecoder(
                    width, task.output_size, encoder.strides, encoder.size, activation
                )
                continue
            pool = [GridPool(encoder.pool)] if spatial else []
            n_in = width * encoder.pool**2 if spatial else width
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
            self._linear = [ms[0] for ms in layers]

    def representation(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(*inputs)

    def shared_chain(self) -> nn.Sequential | None:
        trunk = getattr(self.encoder, "trunk", None)
        return trunk if isinstance(trunk, nn.Sequential) and len(trunk) else None

    def linear_heads(self) -> list[nn.Linear] | None:
        return self._linear

    def heads_forward(self, rep: torch.Tensor) -> list[torch.Tensor]:
        linear = self._linear
        if linear and not torch.is_grad_enabled() and len(linear) > 2 and rep.dim() == 2:
            # inference: all linear heads in one matrix product
            out = fused_linear(linear, rep)
            return list(out.split([h.out_features for h in linear], dim=1))
        return super().heads_forward(rep)
