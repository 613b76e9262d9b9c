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
        self.logits = torch.zeros(len(task_names), requires_grad=True)
        self._opt = torch.optim.Adam(
            [self.logits], lr=self.options.lr, weight_decay=self.options.gamma
        )
        self._prev: torch.Tensor | None = None

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(losses) - self.options.min_loss
        present = (stacked.detach() > 0).float()
        safe = torch.where(present > 0, stacked, torch.ones_like(stacked))
        z = torch.softmax(self.logits.detach(), 0).to(stacked.device) * present
        c = 1.0 / (z / safe.detach()).sum().clamp_min(1e-12)
        self._prev = safe.detach()
        self._present = present
        return (c * z * torch.log(safe)).sum()

    def after_step(self, new_losses: list[torch.Tensor]) -> None:
        if self._prev is None:
            return
        new = torch.stack([v.detach() for v in new_losses]) - self.options.min_loss
        new = new.clamp_min(1e-12).cpu()
        delta = (torch.log(self._prev.cpu()) - torch.log(new)) * self._present.cpu()
        with torch.enable_grad():
            z = torch.softmax(self.logits, 0)
            (grad,) = torch.autograd.grad(z, self.logits, grad_outputs=delta)
        self._opt.zero_grad()
        self.logits.grad = grad
        self._opt.step()

    def weights(self) -> dict[str, float]:
        z = torch.softmax(self.logits.detach(), 0).tolist()
        return dict(zip(self.task_names, z, strict=True))

    def state(self) -> dict[str, Any]:
        return {"logits": self.logits.detach().tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.logits.copy_(torch.tensor(state["logits"]))
