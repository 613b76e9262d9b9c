"""Nash-MTL (Navon et al. 2022): the Nash bargaining solution, d = Σ α_i g_i with
K α = 1/α (α > 0), solved exactly by Newton's method on a strictly convex potential.

Like the paper, the weights can be recomputed every ``update_weights_every`` steps and
reused in between; the state lives in the object, per task."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer
from polytask.balancing.solvers import nash_weights


class NashMTLOptions(BalancerOptions):
    update_weights_every: int = Field(1, ge=1)
    #: relative tolerance of K α = 1/α
    tol: float = Field(1e-6, gt=0)


class NashMTL(GradientBalancer):
    name = "nash_mtl"
    Options = NashMTLOptions
    options: NashMTLOptions

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self._step = 0
        self._alpha: dict[int, float] = {}

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        reuse = self._step % self.options.update_weights_every != 0
        self._step += 1
        if reuse and all(t in self._alpha for t in tasks):
            return np.array([self._alpha[t] for t in tasks])
        alpha = nash_weights(gram, tol=self.options.tol)
        self._alpha.update(zip(tasks, alpha.tolist(), strict=True))
        return alpha

    def state(self) -> dict[str, Any]:
        return {"step": self._step, "alpha": {str(k): v for k, v in self._alpha.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self._step = int(state["step"])
        self._alpha = {int(k): float(v) for k, v in state["alpha"].items()}
