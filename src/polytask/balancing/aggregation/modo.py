"""MoDo (Chen et al. 2023), multi-objective gradient descent with double sampling: the
MGDA weights are not solved for at every step but followed by one projected gradient
step on the regularised min-norm problem,

    λ_(k+1) = Π_simplex(λ_k - γ (K λ_k + ρ λ_k)),   d = Gᵀ λ_(k+1),

so that their noise averages out over steps (the paper takes the two gradients in K from
independent batches; a step here has one batch, so K is the batch's Gramian). With a
fixed K the iteration converges to argmin_simplex ½ λᵀ(K + ρI)λ. λ is kept per task."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer
from polytask.balancing.solvers import project_simplex


class MoDoOptions(BalancerOptions):
    #: γ, the step of the weights
    gamma: float = Field(0.1, gt=0)
    #: ρ, the regularisation of the weights' problem
    rho: float = Field(0.1, ge=0)


def start_weights(kept: dict[int, float], tasks: list[int]) -> np.ndarray:
    """The present tasks' kept weights (1/T for a task not seen yet), on the simplex."""
    lam = np.array([kept.get(t, 1.0 / len(tasks)) for t in tasks])
    return project_simplex(lam)


class MoDo(GradientBalancer):
    name = "modo"
    Options = MoDoOptions
    options: MoDoOptions

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self.lam: dict[int, float] = {}

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        lam = start_weights(self.lam, tasks)
        g, rho = self.options.gamma, self.options.rho
        lam = project_simplex(lam - g * (gram @ lam + rho * lam))
        self.lam.update(zip(tasks, lam.tolist(), strict=True))
        return lam

    def state(self) -> dict[str, Any]:
        return {"lam": {str(k): v for k, v in self.lam.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.lam = {int(k): float(v) for k, v in state["lam"].items()}
