"""FAMO (Liu et al. 2023), fast adaptive multitask optimisation: decrease every task's
loss at an equal rate using only losses, no per-task gradients.

With logits ξ and z = softmax(ξ), the objective is Σ_t c z_t log L_t with
c = (Σ_t z_t / L_t)⁻¹ held constant (its gradient is c Σ z_t ∇L_t / L_t). After the
update, the same batch's new losses give δ_t = log L_t - log L_t⁺, and ξ takes an Adam
step along J_softmax(ξ)ᵀ δ with weight decay γ."""

from __future__ import annotations

from typing import Any

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
    needs_loss_after_step = True

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        t = len(task_names)
        self.logits = torch.zeros(t, dtype=torch.float64)
        # Adam moments of the logits (β = 0.9, 0.999), kept by hand: 20 numbers do not
        # need an optimiser object's per-step overhead
        self._m = torch.zeros(t, dtype=torch.float64)
        self._v = torch.zeros(t, dtype=torch.float64)
        self._step = 0
        self._prev: torch.Tensor | None = None

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(losses) - self.options.min_loss
        present = (stacked.detach() > 0).to(stacked.dtype)
        safe = torch.where(present > 0, stacked, torch.ones_like(stacked))
        z = torch.softmax(self.logits, 0).to(stacked) * present
        c = 1.0 / (z / safe.detach()).sum().clamp_min(1e-12)
        self._prev = safe.detach()
        self._present = present
        return (c * z * torch.log(safe)).sum()

    def after_step(self, new_losses: list[torch.Tensor]) -> None:
        if self._prev is None:
            return
        new = (torch.stack(new_losses) - self.options.min_loss).clamp_min(1e-12)
        delta = ((torch.log(self._prev) - torch.log(new)) * self._present).cpu().double()
        z = torch.softmax(self.logits, 0)
        grad = z * (delta - (z * delta).sum())  # J_softmax(ξ)ᵀ δ
        grad = grad + self.options.gamma * self.logits  # Adam's (coupled) weight decay
        self._step += 1
        self._m.mul_(0.9).add_(grad, alpha=0.1)
        self._v.mul_(0.999).addcmul_(grad, grad, value=0.001)
        m_hat = self._m / (1 - 0.9**self._step)
        v_hat = self._v / (1 - 0.999**self._step)
        self.logits -= self.options.lr * m_hat / (v_hat.sqrt() + 1e-8)

    def weights(self) -> dict[str, float]:
        z = torch.softmax(self.logits, 0).tolist()
        return dict(zip(self.task_names, z, strict=True))

    def state(self) -> dict[str, Any]:
        return {
            "logits": self.logits.tolist(),
            "m": self._m.tolist(),
            "v": self._v.tolist(),
            "step": self._step,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.logits = torch.tensor(state["logits"], dtype=torch.float64)
        self._m = torch.tensor(state["m"], dtype=torch.float64)
        self._v = torch.tensor(state["v"], dtype=torch.float64)
        self._step = int(state["step"])
