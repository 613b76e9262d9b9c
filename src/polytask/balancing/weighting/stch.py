"""Smooth Tchebycheff scalarisation (Lin et al. 2024): minimise a smooth upper bound of
the worst task's weighted distance to its ideal value,

    g_μ(L) = μ log Σ_i exp(λ_i (L_i - z_i) / μ),

with max_i λ_i (L_i - z_i) <= g_μ <= max_i λ_i (L_i - z_i) + μ log T, so g_μ tends to the
Tchebycheff max as μ -> 0 while staying differentiable; its gradient weighs task i by
softmax_i(λ (L - z) / μ) λ_i. The preference λ is 1 per task unless ``weights`` gives it;
the ideal point z is ``ideal`` (0: every loss at its lower bound). Tasks without labels
in a batch take no part."""

from __future__ import annotations

import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, LossBalancer
from polytask.errors import PolytaskError, did_you_mean


class STCHOptions(BalancerOptions):
    #: μ, the smoothing: small is close to the worst task alone
    mu: float = Field(0.1, gt=0)
    #: preference λ per task name (1 for a task not named)
    weights: dict[str, float] = Field(default_factory=dict)
    #: the ideal value z of every task loss
    ideal: float = 0.0


def preferences(given: dict[str, float], task_names: list[str], method: str) -> list[float]:
    """λ per task in task order: the given ones, 1 for the others; an unknown name is an
    error."""
    for name in given:
        if name not in task_names:
            raise PolytaskError(
                f"balancing {method} weights: no task named '{name}'"
                f"{did_you_mean(name, task_names)}; tasks are {', '.join(task_names)}"
            )
    return [float(given.get(t, 1.0)) for t in task_names]


class SmoothTchebycheff(LossBalancer):
    name = "stch"
    Options = STCHOptions
    options: STCHOptions

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        self._pref = torch.tensor(preferences(self.options.weights, task_names, self.name))
        self._last = torch.full((len(task_names),), 1.0 / max(1, len(task_names)))

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(losses)
        pref = self._pref.to(stacked.device, stacked.dtype)
        present = stacked.detach() > 0  # absent tasks (no labels) take no part
        scaled = pref * (stacked - self.options.ideal) / self.options.mu
        scaled = torch.where(present, scaled, torch.full_like(scaled, -torch.inf))
        if not bool(present.any()):
            return (stacked * 0).sum()
        self._last = torch.softmax(scaled.detach(), 0) * pref  # read back only for logs
        return self.options.mu * torch.logsumexp(scaled, 0)

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._last.tolist(), strict=True))
