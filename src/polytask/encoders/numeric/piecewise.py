"""Piecewise linear encoding (Gorishniy et al. 2022, "On Embeddings for Numerical
Features in Tabular Deep Learning", section 3.2): a column's training-split quantiles
b_0 < ... < b_T cut it into T bins, and a value x becomes the T components

    e_t = clamp((x - b_{t-1}) / (b_t - b_{t-1}), 0, 1)

(1 for the bins below x, the fraction of its own bin, 0 above), then a linear layer per
feature (or one shared by all, ``shared``) maps them to ``width`` (the paper's Q-L;
``relu`` adds its Q-LR activation). The edges are fitted by the preprocessor on the
training split, saved in its JSON, and held here as buffers; a column with fewer
distinct quantiles than ``bins`` has fewer bins (the rest are always 0)."""

from __future__ import annotations

import torch
from pydantic import PositiveInt
from torch import nn

from polytask.encoders.numeric.base import (
    FeatureLinear,
    NumericEncoder,
    NumericEncoding,
    NumericEncodingOptions,
    NumericSpec,
)
from polytask.errors import PolytaskError

#: the left edge of a padding bin: no standardised value reaches it (they are clipped)
_NEVER = 1e9


class PiecewiseOptions(NumericEncodingOptions):
    #: quantile bins per column (fitted on the training split)
    bins: PositiveInt = 16
    #: width of each column's vector after the linear layer
    width: PositiveInt = 16
    #: one linear layer shared by every column instead of one per column
    shared: bool = False
    #: a ReLU after the linear layer
    relu: bool = False

    def fitted_bins(self) -> int | None:
        return self.bins


class PiecewiseLinear(nn.Module):
    """(N, F) standardised values -> (N, F, T) bin components from fixed edges."""

    left: torch.Tensor
    span: torch.Tensor

    def __init__(self, edges: list[list[float]], bins: int):
        super().__init__()
        left = torch.full((len(edges), bins), _NEVER)
        span = torch.ones(len(edges), bins)
        for f, e in enumerate(edges):
            b = torch.tensor(e, dtype=torch.float32)
            n = len(e) - 1
            left[f, :n] = b[:-1]
            span[f, :n] = (b[1:] - b[:-1]).clamp_min(1e-9)
        self.register_buffer("left", left)
        self.register_buffer("span", span)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.unsqueeze(-1) - self.left) / self.span).clamp(0.0, 1.0)


class PiecewiseEncoding(NumericEncoding):
    name = "piecewise"
    Options = PiecewiseOptions

    @classmethod
    def build(cls, spec: NumericSpec, options: NumericEncodingOptions) -> nn.Module | None:
        assert isinstance(options, PiecewiseOptions)
        if not spec.encoded:
            return None
        edges = [list(e) for e in spec.edges]
        if len(edges) != len(spec.encoded) or any(len(e) < 2 for e in edges):
            raise PolytaskError(
                "numeric_encoding 'piecewise' needs the bin edges fitted with the "
                "preprocessing, and this run's preprocessing has none; train it again"
            )
        bins = max(options.bins, max(len(e) - 1 for e in edges))
        layers: list[nn.Module] = [
            PiecewiseLinear(edges, bins),
            FeatureLinear(len(edges), bins, options.width, options.shared),
        ]
        if options.relu:
            layers.append(nn.ReLU())
        return NumericEncoder(spec, nn.Sequential(*layers), options.width)
