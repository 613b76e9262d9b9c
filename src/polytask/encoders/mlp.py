"""The tabular encoder: categorical embeddings joined to numeric features (encoded as
``model.numeric_encoding`` says), then the trunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}


def mlp(
    in_features: int,
    widths: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
    norm: str = "none",
) -> nn.Sequential:
    """Linear -> [norm] -> activation -> [dropout], once per width."""
    layers: list[nn.Module] = []
    width = in_features
    for w in widths:
        layers.append(nn.Linear(width, w))
        if norm == "layer":
            layers.append(nn.LayerNorm(w))
        elif norm == "batch":
            layers.append(nn.BatchNorm1d(w))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = w
    return nn.Sequential(*layers)


class TabularEncoder(nn.Module):
    """(numeric (N, D), categorical codes (N, C), *extra inputs) -> (N, out_features).

    Categorical codes go through embeddings; each extra input (a text or image column)
    through its own module from ``extra``, which maps it to a vector of that module's
    ``out_features``. Everything is joined, then the trunk runs: ``trunk`` names it
    (:mod:`polytask.encoders.trunks`; the MLP of ``hidden`` by default) and
    ``trunk_options`` are its own options."""

    #: the representation is a vector (see :class:`polytask.encoders.protocol.Encoder`)
    spatial = False

    def __init__(
        self,
        numeric_width: int,
        cardinalities: Sequence[int],
        embedding_dims: Sequence[int],
        hidden: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
        extra: Sequence[nn.Module] = (),
        trunk: str = "mlp",
        trunk_options: Mapping[str, Any] | None = None,
        numeric_encoding: nn.Module | None = None,
    ):
        from polytask.encoders.trunks import TrunkSpec, build_trunk  # they build on mlp()

        super().__init__()
        #: the numeric block's encoding (:mod:`polytask.encoders.numeric`; None: as it is)
        self.numeric_encoding = numeric_encoding
        self.extra = nn.ModuleList(extra)
        self.embeddings = nn.ModuleList(
            nn.Embedding(card, dim) for card, dim in zip(cardinalities, embedding_dims, strict=True)
        )
        #: widths of the joined input's consecutive slices, one per input feature in
        #: order: numeric features (1 each, or the encoding's widths), categorical
        #: embeddings, extra modules
        numeric_widths = (
            [1] * numeric_width
            if numeric_encoding is None
            else list(cast(list[int], numeric_encoding.feature_widths))
        )
        self.feature_widths = numeric_widths + list(embedding_dims)
        self.feature_widths += [int(cast(int, m.out_features)) for m in self.extra]
        spec = TrunkSpec(
            sum(self.feature_widths), self.feature_widths, hidden, activation, dropout, norm
        )
        self.trunk = build_trunk(trunk, dict(trunk_options or {}), spec)
        self.out_features = int(cast(int, self.trunk.out_features))
        self._has_cat = len(self.embeddings) > 0

    def forward(
        self, numeric: torch.Tensor, categorical: torch.Tensor, *extra: torch.Tensor
    ) -> torch.Tensor:
        if self.numeric_encoding is not None:
            numeric = self.numeric_encoding(numeric)
        if self._has_cat or extra:
            parts = [numeric] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
            parts += [module(x) for module, x in zip(self.extra, extra, strict=True)]
            x = torch.cat(parts, dim=1)
        else:
            x = numeric
        return self.trunk(x)
