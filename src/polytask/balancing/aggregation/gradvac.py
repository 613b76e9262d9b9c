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
        coef = np.eye(t)  # row i: g_i' as a combination of the original gradients
        rows = np.arange(t)
        # every task walks the others in its own random order; all tasks move together
        order = self._rng.permuted(np.tile(rows, (t, 1)), axis=1)
        for r in range(t):
            j = order[:, r]
            gc = coef @ gram  # row i: g_i' · g_k for every k
            norm_i = np.sqrt(np.clip(np.einsum("ik,ik->i", gc, coef), 0.0, None))
            valid = (j != rows) & (sq[j] > 0) & (norm_i > 0)
            if not valid.any():
                continue
            i_v, j_v = rows[valid], j[valid]
            norm_j = np.sqrt(sq[j_v])
            phi = gc[i_v, j_v] / (norm_i[valid] * norm_j)
            target = np.array(
                [self.targets.get((tasks[a], tasks[b]), 0.0) for a, b in zip(i_v, j_v, strict=True)]
            )
            low = phi < target
            step = (
                norm_i[valid]
                * (
                    target * np.sqrt(np.clip(1 - phi**2, 0.0, None))
                    - phi * np.sqrt(np.clip(1 - target**2, 0.0, None))
                )
                / (norm_j * np.sqrt(np.clip(1 - target**2, 1e-12, None)))
            )
            coef[i_v[low], j_v[low]] += step[low]
            for a, b, tg, ph in zip(i_v, j_v, target, phi, strict=True):
                self.targets[(tasks[a], tasks[b])] = (1 - beta) * float(tg) + beta * float(ph)
        return coef.sum(axis=0)

    def state(self) -> dict[str, Any]:
        return {"targets": [[i, j, v] for (i, j), v in self.targets.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.targets = {(int(i), int(j)): float(v) for i, j, v in state["targets"]}
