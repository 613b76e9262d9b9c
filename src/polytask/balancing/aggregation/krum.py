"""Krum (Blanchard et al. 2017), robust aggregation: score every task gradient by the sum
of its squared distances to its T - f - 2 nearest others and keep the ``m`` best-scored
(multi-Krum: their mean); a gradient far from the rest (an outlier, or up to f
corrupted ones when T > 2f + 2) is never kept.

‖g_i - g_j‖² = K_ii + K_jj - 2 K_ij, so the Gramian is all it needs."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer


class KrumOptions(BalancerOptions):
    #: how many gradients may be outliers (the guarantee needs T > 2f + 2)
    f: int = Field(1, ge=0)
    #: how many of the best-scored gradients are averaged (1: Krum itself)
    m: int = Field(1, ge=1)


def krum_scores(gram: np.ndarray, f: int) -> np.ndarray:
    """Per gradient, the sum of squared distances to its max(1, T - f - 2) nearest."""
    t = gram.shape[0]
    d = np.diag(gram)
    dist = np.maximum(d[:, None] + d[None, :] - 2 * gram, 0.0)
    np.fill_diagonal(dist, np.inf)
    near = max(1, min(t - 1, t - f - 2))
    return np.sort(dist, axis=1)[:, :near].sum(axis=1)


class Krum(GradientBalancer):
    name = "krum"
    Options = KrumOptions
    options: KrumOptions

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        t = gram.shape[0]
        coef = np.zeros(t)
        if t == 1:
            coef[0] = 1.0
            return coef
        keep = np.argsort(krum_scores(gram, self.options.f), kind="stable")[: self.options.m]
        coef[keep] = 1.0 / len(keep)
        return coef
