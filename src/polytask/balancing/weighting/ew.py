"""Equal weighting: the plain sum of task losses."""

from __future__ import annotations

import torch

from polytask.balancing.base import LossBalancer


class EqualWeighting(LossBalancer):
    name = "ew"

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        total = losses[0]
        for loss in losses[1:]:
            total = total + loss
        return total

    def weights(self) -> dict[str, float]:
        return dict.fromkeys(self.task_names, 1.0)
