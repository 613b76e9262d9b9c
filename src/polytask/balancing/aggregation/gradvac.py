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
        #: target cosine of each ordered pair (i, j) of task indices
        self.target = np.zeros((0, 0))

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        t = gram.shape[0]
        sq = np.diag(gram)
        beta = self.options.beta
        idx = np.asarray(tasks)
        self._grow(int(idx.max()) + 1)
        coef = np.eye(t)  # row i: g_i' as a combination of the original gradients
        rows = np.arange(t)
        # every task walks the others in its own random order; all tasks move together
        order = self._rng.permuted(np.tile(rows, (t, 1)), axis=1)
        for r in range(t):
            j = order[:, r]
            gc = coef @ gram  # row i: g_i' · g_k for every k
            norm_i = np.sqrt(np.maximum((gc * coef).sum(axis=1), 0.0))  # ufuncs: no np.clip wrapper
            valid = (j != rows) & (sq[j] > 0) & (norm_i > 0)
            if not valid.any():
                continue
            i_v, j_v = rows[valid], j[valid]
            norm_j = np.sqrt(sq[j_v])
            phi = gc[i_v, j_v] / (norm_i[valid] * norm_j)
            ti, tj = idx[i_v], idx[j_v]
            target = self.target[ti, tj]
            low = phi < target
            step = (
                norm_i[valid]
                * (
                    target * np.sqrt(np.maximum(1 - phi**2, 0.0))
                    - phi * np.sqrt(np.maximum(1 - target**2, 0.0))
                )
                / (norm_j * np.sqrt(np.maximum(1 - target**2, 1e-12)))
            )
            coef[i_v[low], j_v[low]] += step[low]
            self.target[ti, tj] = (1 - beta) * target + beta * phi
        return coef.sum(axis=0)

    def _grow(self, n: int) -> None:
        if n > self.target.shape[0]:
            grown = np.zeros((n, n))
            m = self.target.shape[0]
            grown[:m, :m] = self.target
            self.target = grown

    @property
    def targets(self) -> dict[tuple[int, int], float]:
        """The target cosine of each ordered pair of task indices seen so far."""
        n = self.target.shape[0]
        return {(i, j): float(self.target[i, j]) for i in range(n) for j in range(n) if i != j}

    @targets.setter
    def targets(self, values: dict[tuple[int, int], float]) -> None:
        self._grow(max((max(k) for k in values), default=-1) + 1)
        for (i, j), v in values.items():
            self.target[i, j] = v

    def state(self) -> dict[str, Any]:
        return {"target": self.target.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.target = np.asarray(state["target"], dtype=np.float64).reshape(
            len(state["target"]), -1
        )

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._rng.bit_generator.state = state["rng"]
