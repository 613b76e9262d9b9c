"""FAMO (Liu et al. 2023), fast adaptive multitask optimisation: decrease every task's
loss at an equal rate using only losses, no per-task gradients.

With logits ξ and z = softmax(ξ), the objective is Σ_t c z_t log L_t with
c = (Σ_t z_t / L_t)⁻¹ held constant (its gradient is c Σ z_t ∇L_t / L_t). After the
update, the same batch's new losses give δ_t = log L_t - log L_t⁺, and ξ takes an Adam
step along J_softmax(ξ)ᵀ δ with weight decay γ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, LossBalancer


class FAMOOptions(BalancerOptions):
    #: learning rate of the logits ξ
    lr: float = Field(0.025, gt=0)
    #: weight decay γ of the logits
    gamma: float = Field(1e-3, ge=0)
    #: a lower bound of every loss (0 for the usual non-negative losses)
    min_loss: float = 0.0


class FAMO(LossBalancer):
    name = "famo"
    Options = FAMOOptions
    options: FAMOOptions

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        t = len(task_names)
        # the logits and their Adam moments (β = 0.9, 0.999) are 20-odd numbers: numpy
        # updates them in about a microsecond an operation, torch in several
        self.logits = np.zeros(t)
        self._m = np.zeros(t)
        self._v = np.zeros(t)
        self._step = 0
        self._z = torch.full((t,), 1.0 / t)  # softmax(ξ), refreshed after each update
        self._prev: torch.Tensor | None = None

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        """An objective whose gradient is that of Σ_t c z_t log L_t: with c and z held
        constant that gradient is Σ_t (c z_t / L_t) ∇L_t, so the objective is the loss sum
        weighted by c z_t / L_t (the same gradient, fewer autograd nodes than the logs)."""
        stacked = torch.stack(losses)
        values = stacked.detach()
        if self.options.min_loss:
            values = values - self.options.min_loss
        present = values > 0  # absent tasks (no labels) take no part
        safe = torch.where(present, values, 1.0)
        z = self._z.to(values.device) * present
        scaled = z / safe
        weights = scaled / scaled.sum().clamp_min(1e-12)  # c z_t / L_t
        self._prev = torch.where(present, values, torch.nan)  # NaN: sat this step out
        return torch.dot(stacked, weights)

    def after_update(self, losses_after: Callable[[], list[torch.Tensor]]) -> None:
        """δ_t needs the batch's losses at the updated parameters: one more forward."""
        if self._prev is None:
            return
        new_losses = losses_after()
        # one read-back of 2T numbers: the losses before (NaN for absent tasks) and after
        both = torch.stack((self._prev, torch.stack(new_losses))).cpu().numpy()
        prev, new = both.astype(np.float64)
        if self.options.min_loss:
            new = new - self.options.min_loss
        absent = np.isnan(prev)
        # log L_t - log L_t⁺, 0 for absent tasks
        delta = np.log(np.where(absent, 1.0, prev)) - np.log(
            np.where(absent, 1.0, np.maximum(new, 1e-12))
        )
        e = np.exp(self.logits - self.logits.max())
        z = e / e.sum()
        grad = z * (delta - (z * delta).sum())  # J_softmax(ξ)ᵀ δ
        grad += self.options.gamma * self.logits  # Adam's (coupled) weight decay
        self._step += 1
        self._m = 0.9 * self._m + 0.1 * grad
        self._v = 0.999 * self._v + 0.001 * grad * grad
        m_hat = self._m / (1 - 0.9**self._step)
        v_hat = self._v / (1 - 0.999**self._step)
        self.logits = self.logits - self.options.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        self._refresh()

    def _refresh(self) -> None:
        e = np.exp(self.logits - self.logits.max())
        self._z = torch.from_numpy((e / e.sum()).astype(np.float32))

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._z.tolist(), strict=True))

    def state(self) -> dict[str, Any]:
        return {
            "logits": self.logits.tolist(),
            "m": self._m.tolist(),
            "v": self._v.tolist(),
            "step": self._step,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.logits = np.asarray(state["logits"], dtype=np.float64)
        self._m = np.asarray(state["m"], dtype=np.float64)
        self._v = np.asarray(state["v"], dtype=np.float64)
        self._step = int(state["step"])
        self._refresh()
