"""IMTL-L (Liu et al. 2021), the loss half of impartial multi-task learning: learn a
scale s_t per task and minimise Σ_t (e^(s_t) L_t - s_t). For the shared parameters each
task's loss is scaled by e^(s_t); for s_t the objective's derivative e^(s_t) L_t - 1
vanishes where the scaled loss e^(s_t) L_t is 1 for every task, so the scales equalise
the tasks' losses whatever their units. s is trained with the model; the paper starts it
at 0, here by default at that optimum for the first batch, s_t = -log L_t (``init:
loss``), for the reason UW does: an optimiser moves s by about its learning rate a step,
so losses orders of magnitude apart would stay unbalanced for thousands of steps. Tasks
without labels in a batch add nothing (their s_t is not pulled)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from polytask.balancing.base import BalancerOptions, LossBalancer


class IMTLOptions(BalancerOptions):
    #: initial s: "loss" (-log of the task's first batch loss) or a number for all tasks
    init: Literal["loss"] | float = "loss"


def start_scales(init: Literal["loss"] | float, tasks: int) -> tuple[torch.Tensor, set[int]]:
    """The initial s and the tasks still waiting for their first loss."""
    value = 0.0 if init == "loss" else float(init)
    return torch.full((tasks,), value), set(range(tasks)) if init == "loss" else set()


def set_from_losses(scales: torch.Tensor, pending: set[int], losses: dict[int, float]) -> None:
    """s_t = -log L_t for the pending tasks with a positive loss (the scaled loss is 1)."""
    with torch.no_grad():
        for t, value in losses.items():
            if t in pending and value > 0:
                scales[t] = -float(torch.log(torch.tensor(value)))
                pending.discard(t)


class IMTLL(LossBalancer):
    name = "imtl_l"
    Options = IMTLOptions
    options: IMTLOptions

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        start, self._pending = start_scales(self.options.init, len(task_names))
        self.scales = torch.nn.Parameter(start)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.scales]

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        if self._pending:
            values = {t: float(losses[t].detach()) for t in self._pending}
            set_from_losses(self.scales, self._pending, values)
        s = self.scales.to(losses[0].device)
        stacked = torch.stack(losses)
        present = (stacked.detach() > 0).to(stacked.dtype)
        return (present * (torch.exp(s) * stacked - s)).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, torch.exp(self.scales.detach()).tolist(), strict=True))

    def state(self) -> dict[str, Any]:
        return {"scales": self.scales.detach().tolist(), "pending": sorted(self._pending)}

    def load_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.scales.copy_(torch.tensor(state["scales"]))
        self._pending = set(state.get("pending", []))
