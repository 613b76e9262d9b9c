"""Numeric feature encodings by name (``model.numeric_encoding``). A new one is one module
plus its class in ``_CLASSES``; its options (``model.numeric_encoding_options``) are
declared next to its code."""

from __future__ import annotations

from typing import Any

from torch import nn

from polytask.config import validate_options
from polytask.encoders.numeric.base import NumericEncoding, NumericEncodingOptions, NumericSpec
from polytask.encoders.numeric.periodic import PeriodicEncoding
from polytask.encoders.numeric.piecewise import PiecewiseEncoding
from polytask.encoders.numeric.standard import StandardEncoding
from polytask.errors import PolytaskError, did_you_mean

_CLASSES: tuple[type[NumericEncoding], ...] = (
    StandardEncoding,
    PiecewiseEncoding,
    PeriodicEncoding,
)
NUMERIC_ENCODINGS: dict[str, type[NumericEncoding]] = {cls.name: cls for cls in _CLASSES}
assert len(NUMERIC_ENCODINGS) == len(_CLASSES) and "" not in NUMERIC_ENCODINGS


def numeric_encoding_class(name: str) -> type[NumericEncoding]:
    try:
        return NUMERIC_ENCODINGS[name]
    except KeyError:
        raise PolytaskError(
            f"unknown model.numeric_encoding '{name}'{did_you_mean(name, NUMERIC_ENCODINGS)}; "
            f"choose one of {', '.join(NUMERIC_ENCODINGS)}"
        ) from None


def numeric_encoding_options(name: str, options: dict[str, Any]) -> NumericEncodingOptions:
    """``model.numeric_encoding_options`` validated by the encoding's own Options."""
    return validate_options(
        numeric_encoding_class(name).Options, options, where=f"numeric_encoding '{name}'"
    )


def numeric_bins(name: str, options: dict[str, Any]) -> int | None:
    """The quantile bins per column the encoding needs fitted (None: none)."""
    return numeric_encoding_options(name, options).fitted_bins()


def build_numeric_encoding(
    name: str, options: dict[str, Any], spec: NumericSpec
) -> nn.Module | None:
    """The encoding ``name`` for ``spec`` (None: the block goes on as it is)."""
    return numeric_encoding_class(name).build(spec, numeric_encoding_options(name, options))


__all__ = [
    "NUMERIC_ENCODINGS",
    "NumericEncoding",
    "NumericEncodingOptions",
    "NumericSpec",
    "build_numeric_encoding",
    "numeric_bins",
    "numeric_encoding_class",
]
