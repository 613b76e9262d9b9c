"""SDMGrad (Xiao et al. 2023), direction-oriented multi-objective gradient descent: the
update stays close to a target direction, the mean gradient g0, while improving every
task. Its weights solve

    w* = argmin_{w in simplex} ½ ‖G w + λ g0‖²,   d = (G w* + λ g0) / (1 + λ),

a quadratic over the simplex posed on the Gramian (Q = K, c = λ K 1/T), solved here to
a certified duality gap rather than by the paper's fixed count of projected steps. λ = 0
is MGDA's min-norm point; λ -> ∞ the mean gradient. (The paper's stochastic version
draws three independent batches for the three products; a step here has one.)"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer
from polytask.balancing.solvers import simplex_quadratic


class SDMGradOptions(BalancerOptions):
    #: λ, the pull towards the mean gradient (the paper's default 0.3)
    lam: float = Field(0.3, ge=0)


def sdmgrad_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    t = gram.shape[0]
    return simplex_quadratic(gram, lam * gram @ np.full(t, 1.0 / t), "SDMGrad")


class SDMGrad(GradientBalancer):
    name = "sdmgrad"
    Options = SDMGradOptions
    options: SDMGradOptions

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        t, lam = gram.shape[0], self.options.lam
        w = sdmgrad_weights(gram, lam)
        return (w + lam / t) / (1 + lam)
