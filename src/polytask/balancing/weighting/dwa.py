"""Dynamic weight average (Liu et al. 2019): weight each task by how slowly its loss
fell over the last two epochs, w_t = T softmax(L_t(e-1) / L_t(e-2) / temperature).
The first two epochs use weight 1."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, LossBalancer, weighted_sum


class DWAOptions(BalancerOptions):
    temperature: float = Field(2.0, gt=0)


class DynamicWeightAverage(LossBalancer):
    name = "dwa"
    Options = DWAOptions
    options: DWAOptions

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        self.past: list[list[float]] = []
        self._w = [1.0] * len(task_names)

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        return weighted_sum(losses, self._w)

    def end_epoch(self, train_losses: dict[str, float]) -> None:
        self.past = [*self.past[-1:], [train_losses[n] for n in self.task_names]]
        if len(self.past) == 2:
            prev, last = np.array(self.past[0]), np.array(self.past[1])
            ratio = last / np.maximum(prev, 1e-12)
            z = ratio / self.options.temperature
            e = np.exp(z - z.max())
            self._w = (len(ratio) * e / e.sum()).tolist()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._w, strict=True))

    def state(self) -> dict[str, Any]:
        return {"past": self.past, "weights": self._w}

    def load_state(self, state: dict[str, Any]) -> None:
        self.past = [list(p) for p in state["past"]]
        self._w = list(state["weights"])
