"""Uncertainty weighting (Kendall et al. 2018): learn a log-variance s_t per task and
minimise Σ_t ½ exp(-s_t) L_t + ½ s_t (homoscedastic uncertainty as the task weight).

The optimum is s_t = log L_t. The paper leaves the start open; by default each s_t starts
at the log of its task's first batch loss (``init: loss``), because an optimiser moves
s_t by about its learning rate per step and tasks whose losses differ by orders of
magnitude would otherwise stay unbalanced for thousands of steps. A number starts every
s_t there instead (0 is the common choice)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from polytask.balancing.base import BalancerOptions, LossBalancer


class UWOptions(BalancerOptions):
    #: initial log-variance: "loss" (log of the first batch loss) or a number for all tasks
    init: Literal["loss"] | float = "loss"


class UncertaintyWeighting(LossBalancer):
    name = "uw"
    Options = UWOptions
    options: UWOptions

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        init = 0.0 if self.options.init == "loss" else float(self.options.init)
        self.log_vars = torch.nn.Parameter(torch.full((len(task_names),), init))
        self._pending = set(range(len(task_names))) if self.options.init == "loss" else set()

    def _initialise(self, losses: list[torch.Tensor]) -> list[int]:
        """Set s_t = log L_t for the pending tasks with labels here; returns those tasks."""
        started = []
        with torch.no_grad():
            for t in list(self._pending):
                value = float(losses[t].detach())
                if value > 0:  # a task without labels in this batch waits for one with
                    self.log_vars[t] = float(torch.log(torch.tensor(value)))
                    self._pending.discard(t)
                    started.append(t)
        return started

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_vars]

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        started = self._initialise(losses) if self._pending else []
        s = self.log_vars.to(losses[0].device)
        if started:
            # at s_t = log L_t the gradient ½ - ½ exp(-s_t) L_t is zero: leave it exactly
            # zero rather than rounding noise, which Adam's first step would scale to ~lr
            frozen = torch.zeros_like(s, dtype=torch.bool)
            frozen[started] = True
            s = torch.where(frozen, s.detach(), s)
        stacked = torch.stack(losses)
        present = (stacked.detach() > 0).to(stacked.dtype)  # absent tasks add nothing
        return (present * (0.5 * torch.exp(-s) * stacked + 0.5 * s)).sum()

    def weights(self) -> dict[str, float]:
        w = (0.5 * torch.exp(-self.log_vars.detach())).tolist()
        return dict(zip(self.task_names, w, strict=True))

    def state(self) -> dict[str, Any]:
        return {"log_vars": self.log_vars.detach().tolist(), "pending": sorted(self._pending)}

    def load_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_vars.copy_(torch.tensor(state["log_vars"]))
        self._pending = set(state.get("pending", []))
