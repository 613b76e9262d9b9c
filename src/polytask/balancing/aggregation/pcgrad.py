"""PCGrad (Yu et al. 2020): project each task gradient onto the normal plane of every
other task gradient it conflicts with (in random order), then sum.

Each projected gradient stays a linear combination of the original ones, so we track
its coefficients and need only the Gramian."""

from __future__ import annotations

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

    def coefficients(self, gram: np.ndarray, tasks: list[int]) -> np.ndarray:
        t = gram.shape[0]
        sq = np.diag(gram)
        total = np.zeros(t)
        for i in range(t):
            c = np.zeros(t)
            c[i] = 1.0
            for j in self._rng.permutation(t):
                if j == i or sq[j] <= 0:
                    continue
                dot = float(c @ gram[:, j])  # g_i' · g_j
                if dot < 0:
                    c[j] -= dot / sq[j]
            total += c
        return total
