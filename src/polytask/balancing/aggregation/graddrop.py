"""GradDrop (Chen et al. 2020): keep, per coordinate, only the gradients of one sign,
chosen at random with probability given by the sign purity P = ½(1 + Σg / Σ|g|); sum.

It looks at single coordinates, so it needs the full (T, P) matrix."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer, seeded_generator


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

    def direction(self, matrix: torch.Tensor, tasks: list[int]) -> torch.Tensor:
        purity = 0.5 * (1 + matrix.sum(0) / (matrix.abs().sum(0) + 1e-12))
        u = torch.rand(purity.shape, generator=self._gen).to(matrix.device, matrix.dtype)
        # keep positive entries where purity > u and negative ones where purity < u: with
        # the chosen sign s = ±1 per coordinate, the kept sum is s · Σ_t max(s g_t, 0)
        sign = (purity > u).to(matrix.dtype) * 2 - 1
        self.last_weights = dict.fromkeys(tasks, float("nan"))
        kept = (matrix * sign).clamp_(min=0).sum(0) * sign
        leak = self.options.leak
        return kept if leak == 0 else (1 - leak) * kept + leak * matrix.sum(0)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._gen.set_state(state["generator"])
