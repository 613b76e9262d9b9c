"""What every tabular trunk is built from, and what it hands back.

A trunk maps the joined input vector (numeric features, categorical embeddings, text and
image vectors side by side; ``feature_widths`` says where each input feature's slice
lies) to the shared representation. It is one ``nn.Sequential`` with an
``out_features`` width, so the encoder's ``trunk`` stays the stack whose output is the
representation (:class:`polytask.encoders.protocol.Encoder`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict
from torch import nn


class TrunkOptions(BaseModel):
    """A trunk's own options (``model.trunk_options``); none by default."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TrunkSpec:
    """The shared options of ``model`` that a trunk reads where they apply."""

    in_features: int
    #: widths of the consecutive slices of the input, one per input feature, in order
    feature_widths: Sequence[int]
    hidden: Sequence[int] = ()
    activation: str = "relu"
    dropout: float = 0.0
    norm: str = "none"


class Trunk:
    """One trunk kind: its name (``model.trunk``), its options and how it is built."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[TrunkOptions]] = TrunkOptions

    @classmethod
    def build(cls, spec: TrunkSpec, options: TrunkOptions) -> nn.Sequential:
        """The trunk as one stack; its ``out_features`` is the representation's width."""
        raise NotImplementedError


def norm_layer(norm: str, width: int) -> nn.Module:
    """``model.norm`` as a layer over the last dimension (``none``: the identity)."""
    if norm == "layer":
        return nn.LayerNorm(width)
    if norm == "batch":
        return nn.BatchNorm1d(width)
    return nn.Identity()


def with_width(stack: nn.Sequential, width: int) -> nn.Sequential:
    """``stack`` with its ``out_features`` set (the encoder reads it)."""
    stack.out_features = width  # type: ignore[assignment]
    return stack
