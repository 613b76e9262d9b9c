"""GradDrop (Chen et al. 2020): keep, per coordinate, only the gradients of one sign,
chosen at random with probability given by the sign purity P = ½(1 + Σg / Σ|g|); sum.

It looks at single coordinates, so it needs the full (T, P) matrix (or its rank-one
factors, for linear one-output heads at the representation)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer, seeded_generator
from polytask.balancing.jacobian import TaskJacobian


class GradDropOptions(BalancerOptions):
    #: 0 is GradDrop as in the paper; a leak l keeps a fraction l of every dropped gradient
    leak: float = Field(0.0, ge=0, le=1)
    seed: int | None = None


class GradDrop(GradientBalancer):
    name = "graddrop"
    Options = GradDropOptions
    options: GradDropOptions
    needs_matrix = True

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self._gen = seeded_generator(self.options.seed)

    def direction(
        self, jac: TaskJacobian, tasks: list[int], losses: np.ndarray | None
    ) -> torch.Tensor:
        """From the matrix, or from rank-one rows g_t[n, h] = d_t[n] w_t[h] where the
        Jacobian has them: Σ_t g_t = Dᵀ W and Σ_t |g_t| = |D|ᵀ |W|, two (N, T) x (T, H)
        products instead of passes over a (T, N·H) matrix."""
        factors = jac.factors()
        if factors is not None:
            d, w = factors
            return self._drop((d.T @ w).reshape(-1), (d.abs().T @ w.abs()).reshape(-1), tasks)
        matrix = jac.matrix()
        return self._drop(matrix.sum(0), matrix.abs().sum(0), tasks)

    def _drop(self, total: torch.Tensor, l1: torch.Tensor, tasks: list[int]) -> torch.Tensor:
        """From the per-coordinate sums S = Σ_t g_t and A = Σ_t |g_t|: purity
        P = ½(1 + S/A); keep the positive parts where P > u (u uniform), else the negative
        ones. Σ_t max(g_t, 0) = (S + A)/2 and Σ_t min(g_t, 0) = (S - A)/2, so no further
        pass over the gradients is needed."""
        purity = 0.5 * (1 + total / (l1 + 1e-12))
        u = torch.rand(purity.shape, generator=self._gen).to(total.device, total.dtype)
        kept = torch.where(purity > u, total + l1, total - l1).mul_(0.5)
        self.last_weights = dict.fromkeys(tasks, float("nan"))
        leak = self.options.leak
        return kept if leak == 0 else (1 - leak) * kept + leak * total

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._gen.set_state(state["generator"])
