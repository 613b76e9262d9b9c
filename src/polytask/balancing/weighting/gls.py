"""Geometric loss strategy (Chennupati et al. 2019): minimise the geometric mean of the
task losses, (Π_i L_i)^(1/T). Its gradient is Σ_i (G / (T L_i)) ∇L_i with G the
geometric mean, so every task is weighted by the inverse of its own loss: the objective
is invariant to rescaling any one loss, and a task far ahead cannot hide the others.
Tasks without labels in a batch take no part (the mean is over the others)."""

from __future__ import annotations

import torch

from polytask.balancing.base import LossBalancer


class GeometricLossStrategy(LossBalancer):
    name = "gls"

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        self._last = torch.ones(len(task_names))

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(losses)
        present = stacked.detach() > 0  # absent tasks (no labels) take no part
        n = present.sum().clamp_min(1)
        logs = torch.where(present, torch.log(torch.where(present, stacked, 1.0)), 0.0)
        mean = torch.exp(logs.sum() / n)
        self._last = torch.where(present, mean.detach() / (n * stacked.detach()), 0.0)
        return mean if bool(present.any()) else (stacked * 0).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._last.tolist(), strict=True))
