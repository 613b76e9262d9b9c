"""MGDA (Sener and Koltun 2018): the min-norm point of the convex hull of task gradients.

With ``jacobian: representation`` in the balancing config the gradients are taken with
respect to the shared representation: that is MGDA-UB."""

from __future__ import annotations

import numpy as np

from polytask.balancing.base import GradientBalancer
from polytask.balancing.solvers import min_norm_weights


class MGDA(GradientBalancer):
    name = "mgda"

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        return min_norm_weights(gram)
