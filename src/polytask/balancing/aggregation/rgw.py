"""Random gradient weighting (Lin et al. 2022): at every step the task gradients are
combined with weights drawn at random on the simplex, λ = softmax(z), z ~ N(0, I) (or a
Dirichlet(1) draw); the paper shows such random weights escape the bad local minima that
fixed ones settle in. RLW is the same draw on the losses."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer, seeded_generator


class RGWOptions(BalancerOptions):
    distribution: Literal["normal", "dirichlet"] = "normal"
    seed: int | None = Field(None, description="seed of the weight draws")


class RandomGradientWeighting(GradientBalancer):
    name = "rgw"
    Options = RGWOptions
    options: RGWOptions

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self._gen = seeded_generator(self.options.seed)

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        t = gram.shape[0]
        if self.options.distribution == "normal":
            w = torch.softmax(torch.randn(t, generator=self._gen, dtype=torch.float64), 0)
        else:
            e = -torch.log(torch.rand(t, generator=self._gen, dtype=torch.float64))
            w = e / e.sum()  # Dirichlet(1) through Gamma(1) draws
        return w.numpy()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._gen.set_state(state["generator"])
