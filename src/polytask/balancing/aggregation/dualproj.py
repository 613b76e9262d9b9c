"""DualProj (Quinton and Rey 2024): the mean gradient projected onto the dual cone of the
task gradients, Gᵀ v with v = argmin_{v >= 1/T} vᵀ K v."""

from __future__ import annotations

import numpy as np

from polytask.balancing.base import GradientBalancer
from polytask.balancing.solvers import nonneg_quadratic


class DualProj(GradientBalancer):
    name = "dualproj"

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        t = gram.shape[0]
        return nonneg_quadratic(gram, np.full(t, 1.0 / t), "DualProj")
