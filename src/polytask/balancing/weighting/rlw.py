"""Random loss weighting (Lin et al. 2022): at every step, weights drawn at random,
λ = softmax(z) with z ~ N(0, I) (or a Dirichlet(1) draw), times T so that they average
one like equal weighting's."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, LossBalancer, seeded_generator


class RLWOptions(BalancerOptions):
    distribution: Literal["normal", "dirichlet"] = "normal"
    seed: int | None = Field(None, description="seed of the weight draws")


class RandomLossWeighting(LossBalancer):
    name = "rlw"
    Options = RLWOptions
    options: RLWOptions

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        self._gen = seeded_generator(self.options.seed)
        self._last = torch.ones(len(task_names))

    def draw(self) -> torch.Tensor:
        t = len(self.task_names)
        if self.options.distribution == "normal":
            w = torch.softmax(torch.randn(t, generator=self._gen), 0)
        else:
            e = -torch.log(torch.rand(t, generator=self._gen))  # Dirichlet(1) via Gamma(1)
            w = e / e.sum()
        return w * t

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        self._last = self.draw()
        return (self._last.to(losses[0].device) * torch.stack(losses)).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._last.tolist(), strict=True))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._gen.get_state(), "last": self._last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._gen.set_state(state["generator"])
        self._last = state["last"].clone()
