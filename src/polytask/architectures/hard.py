"""Hard parameter sharing: one shared encoder, one head per task."""

from __future__ import annotations

import torch
from torch import nn

from polytask.architectures.base import MultiTaskNet, dense_needs_image, init_head_bias
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
        #: the heads when every one is a single linear layer (found once: they are fixed)
        self._fused_heads: list[nn.Linear] = self.linear_heads() or []

    def representation(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(*inputs)

    def shared_chain(self) -> nn.Sequential | None:
        trunk = getattr(self.encoder, "trunk", None)
        return trunk if isinstance(trunk, nn.Sequential) and len(trunk) else None

    def linear_heads(self) -> list[nn.Linear] | None:
        layers = [list(h.children()) for h in self._head_list]
        if all(len(ms) == 1 and isinstance(ms[0], nn.Linear) for ms in layers):
            return [ms[0] for ms in layers]
        return None

    def heads_forward(self, rep: torch.Tensor) -> list[torch.Tensor]:
        if not torch.is_grad_enabled() and len(self._head_list) > 2 and rep.dim() == 2:
            # inference: all linear heads in one matrix product
            linear = self._fused_heads
            if linear:
                weight = torch.cat([h.weight for h in linear])
                bias = torch.cat([h.bias for h in linear])
                out = torch.addmm(bias, rep, weight.T)
                return list(out.split([h.out_features for h in linear], dim=1))
        return super().heads_forward(rep)
