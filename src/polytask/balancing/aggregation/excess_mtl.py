"""ExcessMTL (He et al. 2024), robust multi-task learning with excess risks: weigh each
task by how far it still is from its own best (its excess risk), not by its loss, so
that a task with large irreducible noise does not take over.

The excess risk of task i is estimated by the second-order Taylor term
½ g_iᵀ H_i⁻¹ g_i with a diagonal H_i from the task's accumulated squared gradients (as
AdaGrad does): r_i = Σ_p g_ip² / √(Σ_steps g_ip² + ε). The first step records r_i⁰;
afterwards the weights take an exponentiated-gradient step towards the largest relative
excess risk, w_i ← w_i exp(η r_i / r_i⁰), renormalised to sum to the number of tasks,
and the update is Σ_i w_i g_i.

The accumulators are per coordinate, so the method needs the matrix; at the
representation a coordinate is (row of the batch, feature), and a batch of another size
(an epoch's last) leaves the weights and the accumulators as they were."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer
from polytask.balancing.jacobian import TaskJacobian


class ExcessMTLOptions(BalancerOptions):
    #: η, the step of the exponentiated-gradient update of the weights
    eta: float = Field(0.01, gt=0)


class ExcessMTL(GradientBalancer):
    name = "excess_mtl"
    Options = ExcessMTLOptions
    options: ExcessMTLOptions
    needs_matrix = True

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self.w: dict[int, float] = {}
        self.initial: dict[int, float] = {}
        #: Σ g² per task index, one (P,) row each
        self.acc: dict[int, torch.Tensor] = {}

    def direction(
        self, jac: TaskJacobian, tasks: list[int], losses: np.ndarray | None
    ) -> torch.Tensor:
        matrix = jac.matrix()
        for i, t in enumerate(tasks):
            self._observe(t, matrix[i])
        w = np.array([self.w.get(t, 1.0) for t in tasks])
        self.last_weights = dict(zip(tasks, w.tolist(), strict=True))
        return torch.as_tensor(w, dtype=matrix.dtype, device=matrix.device) @ matrix

    def _observe(self, t: int, g: torch.Tensor) -> None:
        acc = self.acc.get(t)
        if acc is not None and acc.shape != g.shape:
            return  # a batch of another size at the representation: nothing comparable
        sq = g * g
        acc = sq.clone() if acc is None else acc.add_(sq)
        self.acc[t] = acc
        risk = float((sq / (acc + 1e-7).sqrt()).sum())
        if t not in self.initial:
            if risk > 0:
                self.initial[t] = risk
            self.w.setdefault(t, 1.0)
            return
        self.w[t] *= float(np.exp(self.options.eta * risk / self.initial[t]))
        total = sum(self.w.values())
        self.w = {k: v * len(self.w) / total for k, v in self.w.items()}

    def state(self) -> dict[str, Any]:
        return {
            "w": {str(k): v for k, v in self.w.items()},
            "initial": {str(k): v for k, v in self.initial.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.w = {int(k): float(v) for k, v in state["w"].items()}
        self.initial = {int(k): float(v) for k, v in state["initial"].items()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "acc": {str(t): a.clone() for t, a in self.acc.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.acc = {int(k): v.clone() for k, v in state.get("acc", {}).items()}
