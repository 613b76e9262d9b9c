"""CAGrad (Liu et al. 2021): the direction that maximises the worst task's improvement
within a ball of radius c‖g0‖ around the mean gradient g0.

Dual: w* = argmin_{w in simplex} g_wᵀ g0 + c‖g0‖‖g_w‖, and the update is
d = g0 + (c‖g0‖ / ‖g_w*‖) g_w* (the paper's Algorithm 1; ``rescale`` divides by 1 + c²
as the authors' experiments do). c = 0 gives the mean gradient."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer
from polytask.balancing.solvers import cagrad_weights


class CAGradOptions(BalancerOptions):
    #: radius of the ball around the mean gradient, relative to its norm
    c: float = Field(0.4, ge=0)
    #: divide the direction by 1 + c² (the authors' default in experiments)
    rescale: bool = False


class CAGrad(GradientBalancer):
    name = "cagrad"
    Options = CAGradOptions
    options: CAGradOptions

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        t = gram.shape[0]
        mean = np.full(t, 1.0 / t)
        c = self.options.c
        if c == 0:
            return mean
        w = cagrad_weights(gram, c)
        g0_norm = float(np.sqrt(max(mean @ gram @ mean, 0.0)))
        gw_norm = float(np.sqrt(max(w @ gram @ w, 0.0)))
        coef = mean + (c * g0_norm / gw_norm) * w if gw_norm > 0 else mean
        return coef / (1 + c**2) if self.options.rescale else coef
