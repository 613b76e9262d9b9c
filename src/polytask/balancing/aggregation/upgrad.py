"""UPGrad (Quinton and Rey 2024): the mean of every task gradient projected onto the dual
cone of the task gradients {d : G d >= 0}.

The projection of g_i is Gᵀ v with v = argmin_{v >= e_i} vᵀ K v, so only the Gramian is
needed; each projection is one exact NNLS solve."""

from __future__ import annotations

import numpy as np

from polytask.balancing.base import GradientBalancer
from polytask.balancing.solvers import dual_cone_solutions


class UPGrad(GradientBalancer):
    name = "upgrad"

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        return dual_cone_solutions(gram, np.eye(gram.shape[0]), "UPGrad").mean(axis=0)
