"""MoCo (Fernando et al. 2023), multi-objective gradient correction: the stochastic task
gradients are tracked by a moving average Y (which removes the bias MGDA's weights get
from gradient noise), the weights follow one projected step of the regularised min-norm
problem on the tracked gradients, and the update is their combination:

    Y ← Y - β (Y - G),   λ ← Π_simplex(λ - γ (Y Yᵀ λ + ρ λ)),   d = Yᵀ λ.

At ``jacobian: parameters`` Y holds one (P,) row per task. At the representation the
rows belong to other samples from batch to batch, so the tracking is done on what is
comparable across batches, the Gramian (K̄ ← K̄ - β (K̄ - K) in place of Y Yᵀ), and λ
weighs the step's own gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from polytask.balancing.aggregation.modo import start_weights
from polytask.balancing.base import BalancerOptions, GradientBalancer
from polytask.balancing.jacobian import TaskJacobian
from polytask.balancing.solvers import project_simplex


class MoCoOptions(BalancerOptions):
    #: β, the rate of the gradient tracking
    beta: float = Field(0.1, gt=0, le=1)
    #: γ, the step of the weights
    gamma: float = Field(0.1, gt=0)
    #: ρ, the regularisation of the weights' problem
    rho: float = Field(0.1, ge=0)


class MoCo(GradientBalancer):
    name = "moco"
    Options = MoCoOptions
    options: MoCoOptions

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self.lam: dict[int, float] = {}
        #: tracked gradients per task index (parameter level)
        self.tracked: dict[int, torch.Tensor] = {}
        #: tracked Gramian entries per pair of task indices (representation level)
        self.tracked_gram: dict[tuple[int, int], float] = {}

    def needs_matrix_at(self, level: str) -> bool:
        return level == "parameters"

    def _step_weights(self, yy: np.ndarray, tasks: list[int]) -> np.ndarray:
        lam = start_weights(self.lam, tasks)
        g, rho = self.options.gamma, self.options.rho
        lam = project_simplex(lam - g * (yy @ lam + rho * lam))
        self.lam.update(zip(tasks, lam.tolist(), strict=True))
        self.last_weights = dict(zip(tasks, lam.tolist(), strict=True))
        return lam

    def direction(
        self, jac: TaskJacobian, tasks: list[int], losses: np.ndarray | None
    ) -> torch.Tensor:
        matrix, beta = jac.matrix(), self.options.beta
        rows = []
        for i, t in enumerate(tasks):
            prev = self.tracked.get(t)
            if prev is None or prev.shape != matrix[i].shape:
                y = matrix[i].clone()  # a task's first gradient starts its track
            else:
                y = prev.mul_(1 - beta).add_(matrix[i], alpha=beta)
            self.tracked[t] = y
            rows.append(y)
        y = torch.stack(rows)
        lam = self._step_weights((y @ y.T).double().cpu().numpy(), tasks)
        return torch.as_tensor(lam, dtype=y.dtype, device=y.device) @ y

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        beta = self.options.beta
        kbar = np.empty_like(gram)
        for a, s in enumerate(tasks):
            for b, t in enumerate(tasks):
                prev = self.tracked_gram.get((s, t))
                kbar[a, b] = gram[a, b] if prev is None else prev + beta * (gram[a, b] - prev)
                self.tracked_gram[(s, t)] = float(kbar[a, b])
        return self._step_weights(kbar, tasks)

    def state(self) -> dict[str, Any]:
        gram = {f"{s},{t}": v for (s, t), v in self.tracked_gram.items()}
        return {"lam": {str(k): v for k, v in self.lam.items()}, "tracked_gram": gram}

    def load_state(self, state: dict[str, Any]) -> None:
        self.lam = {int(k): float(v) for k, v in state["lam"].items()}
        self.tracked_gram = {
            (int(k.split(",")[0]), int(k.split(",")[1])): float(v)
            for k, v in state["tracked_gram"].items()
        }

    def state_dict(self) -> dict[str, Any]:
        tracked = {str(t): y.clone() for t, y in self.tracked.items()}
        return {**super().state_dict(), "tracked": tracked}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tracked = {int(k): v.clone() for k, v in state.get("tracked", {}).items()}
