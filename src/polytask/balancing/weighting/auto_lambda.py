"""Auto-Lambda (Liu et al. 2022): learn the task weights λ of Σ_i λ_i L_i as a bilevel
problem, choosing λ so that one training step with them lowers the loss on data the
step did not see:

    min_λ  L_val(θ'),   θ' = θ - α ∇_θ Σ_i λ_i L_i^train(θ),

where L_val sums the primary tasks' losses (all tasks unless ``primary`` names some, the
paper's auxiliary-learning setting). Its hypergradient is
∂L_val(θ')/∂λ_i = -α ∇_θ L_i^train(θ) · ∇_θ' L_val(θ'), which the paper takes by finite
differences along v = ∇_θ' L_val(θ'): with θ± = θ ± ε v and ε = 0.01 / ‖v‖,

    ∂L_val/∂λ_i ≈ -α (L_i^train(θ+) - L_i^train(θ-)) / (2ε),

and λ takes an Adam step along it (clipped at 0, so no task is pushed away). After each
optimiser step, both batches are drawn from the training split (the held-out one is a
different batch of it, as the paper samples its meta-validation data) through the
trainer's probe, in evaluation mode; α is the optimiser's learning rate. Cost: two
forward-backward and two forward passes of ``batch_size`` rows per step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from polytask.balancing.base import (
    BalancerOptions,
    LossBalancer,
    Probe,
    seeded_generator,
    weighted_sum,
)
from polytask.balancing.weighting.stch import preferences


class AutoLambdaOptions(BalancerOptions):
    #: learning rate of λ (Adam)
    lr: float = Field(1e-4, gt=0)
    #: λ of every task at the start
    init: float = Field(1.0, ge=0)
    #: tasks whose held-out loss λ is chosen for (empty: all tasks)
    primary: list[str] = Field(default_factory=list)
    #: rows of each batch drawn from the training split for the bilevel step
    batch_size: int = Field(256, ge=1)
    seed: int | None = Field(None, description="seed of the batches drawn")


class AutoLambda(LossBalancer):
    name = "auto_lambda"
    Options = AutoLambdaOptions
    options: AutoLambdaOptions

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        t = len(task_names)
        named = self.options.primary
        preferences(dict.fromkeys(named, 1.0), task_names, self.name)  # known names only
        self._primary = [not named or name in named for name in task_names]
        self.lam = np.full(t, self.options.init)
        self._m, self._v, self._step = np.zeros(t), np.zeros(t), 0
        self._gen = seeded_generator(self.options.seed)

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        return weighted_sum(losses, self.lam.tolist())

    def after_update(self, losses_after: Any) -> None:
        if not callable(getattr(losses_after, "losses", None)):
            return  # a plain closure (no training split to draw from): nothing to learn
        self._adam(self.hypergradient(losses_after))

    def hypergradient(self, probe: Probe) -> np.ndarray:
        """∂L_val(θ')/∂λ by the paper's finite differences (the parameters are left as
        they were)."""
        n = min(self.options.batch_size, probe.rows)
        train = torch.randperm(probe.rows, generator=self._gen)[:n]
        held_out = torch.randperm(probe.rows, generator=self._gen)[:n]
        params: list[torch.Tensor] = list(probe.params)
        alpha = probe.lr
        saved = [p.detach().clone() for p in params]
        lam = self.lam.tolist()
        grads = _grads(weighted_sum(probe.losses(train, grad=True), lam), params)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-alpha)  # θ' = θ - α ∇ Σ λ L
        val = probe.losses(held_out, grad=True)
        v = _grads(weighted_sum(val, [float(p) for p in self._primary]), params)
        norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in v])))
        if norm == 0:
            _restore(params, saved)
            return np.zeros(len(lam))
        eps = 0.01 / norm
        around = []
        for sign in (1.0, -1.0):
            _restore(params, saved)
            with torch.no_grad():
                torch._foreach_add_(params, v, alpha=sign * eps)
            around.append(torch.stack(probe.losses(train)).double().cpu().numpy())
        _restore(params, saved)
        return -alpha * (around[0] - around[1]) / (2 * eps)

    def _adam(self, grad: np.ndarray) -> None:
        self._step += 1
        self._m = 0.9 * self._m + 0.1 * grad
        self._v = 0.999 * self._v + 0.001 * grad * grad
        m_hat = self._m / (1 - 0.9**self._step)
        v_hat = self._v / (1 - 0.999**self._step)
        step = self.options.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        self.lam = np.maximum(self.lam - step, 0.0)

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.lam.tolist(), strict=True))

    def state(self) -> dict[str, Any]:
        if not self._step:  # nothing learnt yet
            return {}
        return {"lam": self.lam.tolist(), "m": self._m.tolist(), "v": self._v.tolist(),
                "step": self._step}  # fmt: skip

    def load_state(self, state: dict[str, Any]) -> None:
        if state:
            self.lam = np.asarray(state["lam"], dtype=np.float64)
            self._m = np.asarray(state["m"], dtype=np.float64)
            self._v = np.asarray(state["v"], dtype=np.float64)
            self._step = int(state["step"])

    def state_dict(self) -> dict[str, Any]:
        return {**self.state(), "generator": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._gen.set_state(state.pop("generator"))
        self.load_state(state)


def _grads(objective: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    got = torch.autograd.grad(objective, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(got, params, strict=True)]


def _restore(params: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        torch._foreach_copy_(params, saved)
