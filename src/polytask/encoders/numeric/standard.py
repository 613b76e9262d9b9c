"""Plain standardisation (the default): the preprocessor's standardised values go to the
trunk as they are, one input per column."""

from __future__ import annotations

from torch import nn

from polytask.encoders.numeric.base import NumericEncoding, NumericEncodingOptions, NumericSpec


class StandardEncoding(NumericEncoding):
    name = "standard"

    @classmethod
    def build(cls, spec: NumericSpec, options: NumericEncodingOptions) -> nn.Module | None:
        return None
