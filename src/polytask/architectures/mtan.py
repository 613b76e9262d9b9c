"""MTAN (Liu, Johns and Davison 2019, "End-to-end multi-task learning with attention"):
a shared conv backbone and, per task, a soft-attention module at every backbone stage
that picks that task's features from the shared ones.

At stage j task t computes ``a = sigmoid(g_j([p_j, f_{j-1}(â_{j-1})])) ⊙ p_j``: ``p_j``
is the shared stage's output, ``â_{j-1}`` the task's attended features of the stage
before, ``f`` a 3 x 3 conv that brings them to stage j's width and resolution, ``g_j``
two 1 x 1 convs. (The paper feeds ``g_j`` an intermediate layer of the stage; with a
one-layer stage that is ``p_j`` itself, which is what this implementation reads.)

Split for gradient balancing: the shared representation is every stage's output,
flattened and joined; each task's head is its attention modules plus its tower (a
decoder for per-pixel tasks, else a pooled grid and an MLP), so the split is exact.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from polytask.architectures.base import (
    ArchitectureOptions,
    ArchitectureSpec,
    MultiTaskNet,
    task_head,
)
from polytask.encoders.cnn import ConvDecoder, GridPool
from polytask.encoders.mlp import ACTIVATIONS
from polytask.encoders.protocol import spatial
from polytask.errors import PolytaskError


class MTANOptions(ArchitectureOptions):
    pass


def _attention(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 1),
        nn.BatchNorm2d(c_out),
        nn.Sigmoid(),
    )


class TaskAttention(nn.Module):
    """One task's attention over the shared stages, then its tower: rep -> output."""

    def __init__(
        self,
        shapes: list[tuple[int, int, int]],
        stride: int,
        tower: nn.Module,
        activation: str,
    ):
        super().__init__()
        self.shapes = shapes
        self.sizes = [c * h * w for c, h, w in shapes]
        self.attend = nn.ModuleList(
            _attention(c if j == 0 else 2 * c, c) for j, (c, _, _) in enumerate(shapes)
        )
        self.carry = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(shapes[j][0], shapes[j + 1][0], 3, stride=stride, padding=1),
                nn.BatchNorm2d(shapes[j + 1][0]),
                ACTIVATIONS[activation](),
            )
            for j in range(len(shapes) - 1)
        )
        self.tower = tower

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        parts = rep.split(self.sizes, dim=1)
        attended: torch.Tensor | None = None
        for j, (flat, shape) in enumerate(zip(parts, self.shapes, strict=True)):
            shared = flat.view(-1, *shape)
            if attended is None:
                mask = self.attend[j](shared)
            else:
                carried = self.carry[j - 1](attended)
                if carried.shape[-2:] != shared.shape[-2:]:
                    carried = nn.functional.interpolate(carried, size=shared.shape[-2:])
                mask = self.attend[j](torch.cat([shared, carried], dim=1))
            attended = mask * shared
        return self.tower(attended)


class MTAN(MultiTaskNet):
    name = "mtan"
    Options: ClassVar[type[ArchitectureOptions]] = MTANOptions
    #: asks for the image backbone's feature maps even without per-pixel tasks
    needs_spatial: ClassVar[bool] = True

    def __init__(self, spec: ArchitectureSpec):
        super().__init__(spec)
        encoder = spatial(spec.encoder)
        if encoder is None:
            raise PolytaskError(
                "architecture 'mtan' attends over a conv backbone: it needs one image column "
                "as the only feature (features.include holding just it)"
            )
        self.encoder = encoder
        head_hidden, activation, dropout = list(spec.head_hidden), spec.activation, spec.dropout
        conv = encoder.conv
        with torch.no_grad():
            was = conv.training
            conv.eval()
            probe = torch.zeros(1, conv.in_channels, *encoder.size)
            shapes = [tuple(f.shape[1:]) for f in conv.stage_outputs(probe)]
            conv.train(was)
        stride = encoder.strides[0] if encoder.strides else 1
        c = shapes[-1][0]
        heads = {}
        for task in spec.tasks:
            if task.dense:
                tower: nn.Module = ConvDecoder(
                    c, task.output_size, encoder.strides, encoder.size, activation
                )
            else:
                pooled = c * encoder.pool**2
                tower = nn.Sequential(
                    GridPool(encoder.pool),
                    task_head(pooled, head_hidden, activation, dropout, task),
                )
            heads[task.name] = TaskAttention(shapes, stride, tower, activation)  # type: ignore[arg-type]
        self._set_heads(heads)

    def representation(self, *inputs: torch.Tensor) -> torch.Tensor:
        stages = self.encoder.conv.stage_outputs(inputs[-1])
        return torch.cat([f.flatten(1) for f in stages], dim=1)
