"""Mean and sum of the task gradients."""

from __future__ import annotations

import numpy as np

from polytask.balancing.base import GradientBalancer


class Mean(GradientBalancer):
    name = "mean"

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        return np.full(gram.shape[0], 1.0 / gram.shape[0])


class Sum(GradientBalancer):
    name = "sum"

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        return np.ones(gram.shape[0])
