"""Gradient Vaccine (Wang et al. 2021): for each pair of tasks, move the gradient of one
towards the other until their cosine reaches an adaptive target, an exponential moving
average of past cosines (per pair, kept in the object); then sum.

For g_i' and g_j with cosine φ < target φ̂:
g_i' += ‖g_i'‖ (φ̂ √(1-φ²) - φ √(1-φ̂²)) / (‖g_j‖ √(1-φ̂²)) · g_j."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer


class GradVacOptions(BalancerOptions):
    #: EMA rate of the target cosine
    beta: float = Field(0.01, gt=0, le=1)
    seed: int | None = None


class GradVac(GradientBalancer):
    name = "gradvac"
    Options = GradVacOptions
    options: GradVacOptions

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self._rng = np.random.default_rng(self.options.seed)
        self.targets: dict[tuple[int, int], float] = {}

    def coefficients(self, gram: np.ndarray, tasks: list[int]) -> np.ndarray:
        t = gram.shape[0]
        sq = np.diag(gram)
        beta = self.options.beta
        total = np.zeros(t)
        for i in range(t):
            c = np.zeros(t)
            c[i] = 1.0
            for j in self._rng.permutation(t):
                if j == i or sq[j] <= 0:
                    continue
                key = (tasks[i], tasks[j])
                norm_i = float(np.sqrt(max(c @ gram @ c, 0.0)))
                if norm_i <= 0:
                    continue
                phi = float(c @ gram[:, j]) / (norm_i * np.sqrt(sq[j]))
                target = self.targets.get(key, 0.0)
                if phi < target:
                    coef = (
                        norm_i
                        * (
                            target * np.sqrt(max(1 - phi**2, 0.0))
                            - phi * np.sqrt(max(1 - target**2, 0.0))
                        )
                        / (np.sqrt(sq[j]) * np.sqrt(max(1 - target**2, 1e-12)))
                    )
                    c[j] += coef
                self.targets[key] = (1 - beta) * target + beta * phi
            total += c
        return total

    def state(self) -> dict[str, Any]:
        return {"targets": [[i, j, v] for (i, j), v in self.targets.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.targets = {(int(i), int(j)): float(v) for i, j, v in state["targets"]}
