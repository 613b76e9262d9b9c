"""Periodic embeddings, the PLR of Gorishniy et al. 2022 ("On Embeddings for Numerical
Features in Tabular Deep Learning", section 3.3): per column, ``frequencies`` learned
frequencies c ~ N(0, sigma) (at initialisation) give

    v = [sin(2 pi c x), cos(2 pi c x)]  ->  Linear (per column)  ->  ReLU

a vector of ``width`` per column. ``sigma`` is the paper's most important setting: the
frequencies' scale in standardised units (larger: finer detail, more risk of fitting
noise)."""

from __future__ import annotations

import math
from typing import cast

import torch
from pydantic import Field, PositiveInt
from torch import nn

from polytask.encoders.numeric.base import (
    FeatureLinear,
    NumericEncoder,
    NumericEncoding,
    NumericEncodingOptions,
    NumericSpec,
)


class PeriodicOptions(NumericEncodingOptions):
    #: learned frequencies per column
    frequencies: PositiveInt = 16
    #: standard deviation of the frequencies at initialisation
    sigma: float = Field(0.1, gt=0)
    #: width of each column's vector after the linear layer
    width: PositiveInt = 16


class Frequencies(nn.Module):
    """(N, F) -> (N, F, 2k): sin and cos of 2 pi c x, c (F, k) learned."""

    def __init__(self, features: int, k: int, sigma: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(features, k) * sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = 2 * math.pi * x.unsqueeze(-1) * self.weight
        return torch.cat([torch.sin(v), torch.cos(v)], dim=-1)

    @staticmethod
    def gramian_rule(
        module: nn.Module, x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool
    ) -> torch.Tensor:
        """The Gramian engine's layer rule: task t's gradient of c is
        Σ_n (g_sin cos v - g_cos sin v) 2 pi x, with v = 2 pi c x."""
        t = g.shape[0]
        gram = g.new_zeros(t, t)
        if want_w:
            scaled = 2 * math.pi * x.unsqueeze(-1)
            v = scaled * cast(torch.Tensor, module.weight)
            g_sin, g_cos = g.chunk(2, dim=-1)
            rows = ((g_sin * torch.cos(v) - g_cos * torch.sin(v)) * scaled).sum(1)
            rows = rows.reshape(t, -1)
            gram += rows @ rows.T
        return gram


class PeriodicEncoding(NumericEncoding):
    name = "periodic"
    Options = PeriodicOptions

    @classmethod
    def build(cls, spec: NumericSpec, options: NumericEncodingOptions) -> nn.Module | None:
        assert isinstance(options, PeriodicOptions)
        if not spec.encoded:
            return None
        f = len(spec.encoded)
        per_feature = nn.Sequential(
            Frequencies(f, options.frequencies, options.sigma),
            FeatureLinear(f, 2 * options.frequencies, options.width),
            nn.ReLU(),
        )
        return NumericEncoder(spec, per_feature, options.width)
