"""Uncertainty weighting (Kendall et al. 2018): learn a log-variance s_t per task and
minimise Σ_t ½ exp(-s_t) L_t + ½ s_t (homoscedastic uncertainty as the task weight)."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, LossBalancer


class UWOptions(BalancerOptions):
    #: initial log-variance of every task
    init: float = Field(0.0)


class UncertaintyWeighting(LossBalancer):
    name = "uw"
    Options = UWOptions
    options: UWOptions

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        self.log_vars = torch.nn.Parameter(torch.full((len(task_names),), self.options.init))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_vars]

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        s = self.log_vars.to(losses[0].device)
        return (0.5 * torch.exp(-s) * torch.stack(losses) + 0.5 * s).sum()

    def weights(self) -> dict[str, float]:
        w = (0.5 * torch.exp(-self.log_vars.detach())).tolist()
        return dict(zip(self.task_names, w, strict=True))

    def state(self) -> dict[str, Any]:
        return {"log_vars": self.log_vars.detach().tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_vars.copy_(torch.tensor(state["log_vars"]))
