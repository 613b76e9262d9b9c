"""Quantile bin edges of a numeric column, fitted on the training split for the
piecewise linear encoding (:mod:`polytask.encoders.numeric.piecewise`)."""

from __future__ import annotations

import numpy as np


def quantile_edges(z: np.ndarray, bins: int) -> list[float]:
    """At most ``bins + 1`` distinct edges from the quantiles of the standardised
    training values ``z`` (a constant column gets one bin of width 1 around its value)."""
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return [-0.5, 0.5]
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
    if edges.size < 2:
        return [float(edges[0]) - 0.5, float(edges[0]) + 0.5]
    return [float(e) for e in edges]
