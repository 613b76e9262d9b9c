"""GradNorm (Chen et al. 2018): learn task weights w so that the weighted gradient norms
‖w_i g_i‖ move towards their mean times r_i^α, with r_i the task's relative inverse
training rate L_i(t)/L_i(0) over its mean; Σ w = T.

The direction is Σ w_i g_i with the current weights; then w takes one Adam step on
Σ |‖w_i g_i‖ - target_i| (targets held constant) and is renormalised. It needs the task
losses and the gradient norms, i.e. the Gramian's diagonal."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer


class GradNormOptions(BalancerOptions):
    #: strength of the restoring force towards equal training rates
    alpha: float = Field(1.5, ge=0)
    #: learning rate of the weights
    lr: float = Field(0.025, gt=0)


class GradNorm(GradientBalancer):
    name = "gradnorm"
    Options = GradNormOptions
    options: GradNormOptions
    needs_losses = True
    head_loss = "weighted"  # each head follows w_t L_t with the weights in use

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self.w: dict[int, float] = {}
        self.initial: dict[int, float] = {}
        # Adam moments of each weight (β = 0.9, 0.999), and the step count
        self.m: dict[int, float] = {}
        self.v: dict[int, float] = {}
        self.step = 0

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        assert losses is not None
        for t, loss in zip(tasks, losses, strict=True):
            self.w.setdefault(t, 1.0)
            if t not in self.initial and loss > 0:
                self.initial[t] = float(loss)
        w = np.array([self.w[t] for t in tasks])
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        wn = w * norms
        ratio = np.array(
            [
                loss / self.initial[t] if t in self.initial else 1.0
                for t, loss in zip(tasks, losses, strict=True)
            ]
        )
        rel = ratio / max(float(ratio.mean()), 1e-12)
        target = float(wn.mean()) * rel**self.options.alpha
        grad = np.sign(wn - target) * norms
        self.step += 1
        m = np.array([self.m.get(t, 0.0) for t in tasks]) * 0.9 + 0.1 * grad
        v = np.array([self.v.get(t, 0.0) for t in tasks]) * 0.999 + 0.001 * grad**2
        self.m.update(zip(tasks, m.tolist(), strict=True))
        self.v.update(zip(tasks, v.tolist(), strict=True))
        m_hat, v_hat = m / (1 - 0.9**self.step), v / (1 - 0.999**self.step)
        new = np.maximum(w - self.options.lr * m_hat / (np.sqrt(v_hat) + 1e-8), 1e-4)
        self.w.update(zip(tasks, new.tolist(), strict=True))
        total = sum(self.w.values())
        self.w = {k: v * len(self.w) / total for k, v in self.w.items()}
        return w

    def state(self) -> dict[str, Any]:
        def keyed(d: dict[int, float]) -> dict[str, float]:
            return {str(k): v for k, v in d.items()}

        return {
            "w": keyed(self.w),
            "initial": keyed(self.initial),
            "m": keyed(self.m),
            "v": keyed(self.v),
            "step": self.step,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        def unkeyed(d: dict[str, float]) -> dict[int, float]:
            return {int(k): float(v) for k, v in d.items()}

        self.w, self.initial = unkeyed(state["w"]), unkeyed(state["initial"])
        self.m, self.v = unkeyed(state["m"]), unkeyed(state["v"])
        self.step = int(state["step"])
