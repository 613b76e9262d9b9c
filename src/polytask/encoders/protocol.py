"""What an architecture may read from its encoder, written down once.

Every encoder is a module ``(*inputs) -> representation`` with a width and a flag for
whether the representation is a feature map. A spatial encoder (one image column, kept as
its (N, C, h, w) map so per-pixel heads can decode it) also says how it got there: its
strides, the input size, the grid a per-image head pools onto, and its conv stack (the
from-scratch one or a named backbone). An
encoder whose representation is the output of one MLP ``trunk`` names it, so gradient
balancing can take per-task gradients through it by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from polytask.encoders.backbone import BackboneFeatures
    from polytask.encoders.cnn import ConvEncoder


class Encoder(Protocol):
    """The shared input stem every architecture wraps (read-only to architectures)."""

    @property
    def out_features(self) -> int:
        """The width of the representation (channels, for a spatial encoder)."""
        ...

    @property
    def spatial(self) -> bool:
        """True when the representation is a feature map (see :class:`SpatialEncoder`)."""
        ...

    @property
    def trunk(self) -> nn.Sequential | None:
        """The MLP whose output is the representation, or None when there is none."""
        ...

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor: ...


class SpatialEncoder(Encoder, Protocol):
    """An encoder whose representation is the image's feature map."""

    @property
    def strides(self) -> list[int]: ...

    @property
    def size(self) -> tuple[int, int]: ...

    @property
    def pool(self) -> int:
        """The grid a per-image head pools the map onto (``pool`` x ``pool``)."""
        ...

    @property
    def conv(self) -> ConvEncoder | BackboneFeatures:
        """The stack whose ``stage_outputs(images)`` MTAN attends over (``in_channels``
        says what it takes)."""
        ...


def spatial(encoder: Encoder) -> SpatialEncoder | None:
    """The encoder as a spatial one, or None when its representation is a vector."""
    return encoder if encoder.spatial else None  # type: ignore[return-value]
