"""PCGrad (Yu et al. 2020): project each task gradient onto the normal plane of every
other task gradient it conflicts with (in random order), then sum.

Each projected gradient stays a linear combination of the original ones, so we track
its coefficients and need only the Gramian."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer


class PCGradOptions(BalancerOptions):
    seed: int | None = Field(None, description="seed of the random projection order")


class PCGrad(GradientBalancer):
    name = "pcgrad"
    Options = PCGradOptions
    options: PCGradOptions

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self._rng = np.random.default_rng(self.options.seed)

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        t = gram.shape[0]
        sq = np.diag(gram)
        coef = np.eye(t)  # row i: g_i' as a combination of the original gradients
        rows = np.arange(t)
        # every task walks the others in its own random order; all tasks move together
        order = self._rng.permuted(np.tile(rows, (t, 1)), axis=1)
        for r in range(t):
            j = order[:, r]
            dot = (coef * gram[:, j].T).sum(axis=1)  # g_i' · g_j
            hit = (j != rows) & (sq[j] > 0) & (dot < 0)
            coef[rows[hit], j[hit]] -= dot[hit] / sq[j[hit]]
        return coef.sum(axis=0)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._rng.bit_generator.state = state["rng"]
