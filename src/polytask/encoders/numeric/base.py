"""What every numeric feature encoding is built from, and what it hands back.

An encoding maps the preprocessed numeric block (N, D) -- standardised values, then the
missing indicators; a cyclical column's sin and cos (:mod:`polytask.features.cyclical`)
-- to (N, D'): each *encoded* slot (a plain numeric column's standardised value) becomes
a vector of the encoding's width, the other slots (booleans, sin/cos, indicators) pass
through as they are. ``feature_widths`` says where each input feature's slice lies in
the output, so every trunk sees the encoded widths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class NumericEncodingOptions(BaseModel):
    """An encoding's own options (``model.numeric_encoding_options``); none by default."""

    model_config = ConfigDict(extra="forbid")

    def fitted_bins(self) -> int | None:
        """Quantile bins per column the preprocessor fits on the training split (None:
        the encoding needs none)."""
        return None


@dataclass(frozen=True)
class NumericSpec:
    """The numeric block an encoding reads: its width, the slots it encodes, and each
    encoded slot's bin edges (in standardised units) where the preprocessor fitted them."""

    width: int
    encoded: Sequence[int] = ()
    edges: Sequence[Sequence[float]] = field(default_factory=list)


class NumericEncoder(nn.Module):
    """Encoded slots -> ``per_feature(x)`` (N, F, d) flattened, then the other slots."""

    encoded: torch.Tensor
    rest: torch.Tensor

    def __init__(self, spec: NumericSpec, per_feature: nn.Module, width: int):
        super().__init__()
        encoded = list(spec.encoded)
        rest = [i for i in range(spec.width) if i not in set(encoded)]
        self.register_buffer("encoded", torch.tensor(encoded, dtype=torch.long))
        self.register_buffer("rest", torch.tensor(rest, dtype=torch.long))
        self.per_feature = per_feature
        self.feature_widths = [width] * len(encoded) + [1] * len(rest)
        self.out_features = sum(self.feature_widths)

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        x = numeric.index_select(1, self.encoded)
        z = self.per_feature(x).flatten(1)
        return torch.cat([z, numeric.index_select(1, self.rest)], dim=1)


class NumericEncoding:
    """One encoding kind: its name (``model.numeric_encoding``), options and module."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[NumericEncodingOptions]] = NumericEncodingOptions

    @classmethod
    def build(cls, spec: NumericSpec, options: NumericEncodingOptions) -> nn.Module | None:
        """The module on the numeric block (None: the block goes on unchanged)."""
        raise NotImplementedError


class FeatureLinear(nn.Module):
    """A linear map per feature: (N, F, I) -> (N, F, O), weights (F, I, O), or one
    (I, O) shared by every feature (``shared``)."""

    def __init__(self, features: int, width_in: int, width_out: int, shared: bool = False):
        super().__init__()
        shape = (width_in, width_out) if shared else (features, width_in, width_out)
        bound = 1 / width_in**0.5
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(features, width_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dim() == 2:
            return x @ self.weight + self.bias
        return torch.einsum("nfi,fio->nfo", x, self.weight) + self.bias

    @staticmethod
    def gramian_rule(
        module: nn.Module, x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool
    ) -> torch.Tensor:
        """The Gramian engine's layer rule: weight rows Σ_n x ⊗ g, bias rows Σ_n g."""
        t = g.shape[0]
        gram = g.new_zeros(t, t)
        if want_w:
            shared = module.weight.dim() == 2  # type: ignore[operator,union-attr]
            rows = torch.einsum("nfi,tnfo->tio" if shared else "nfi,tnfo->tfio", x, g)
            rows = rows.reshape(t, -1)
            gram += rows @ rows.T
        if want_b:
            rows = g.sum(1).reshape(t, -1)
            gram += rows @ rows.T
        return gram
