"""IMTL (Liu et al. 2021), impartial multi-task learning: IMTL-L's learned loss scales
and IMTL-G's gradient weights together. Each task's loss is scaled by e^(s_t) (s trained
on Σ_t e^(s_t) L_t - s_t, whose optimum makes every scaled loss 1); the scaled gradients
e^(s_t) g_t are combined with IMTL-G's weights α (equal projections onto every unit
gradient, Σ α = 1), so the update is Σ_t α_t e^(s_t) g_t, and each task's own layers
follow its scaled loss e^(s_t) L_t. The Gramian of the scaled gradients is C K C with
C = diag(e^s), so the method needs only the Gramian and the losses. s starts as IMTL-L's
``init`` says (by default at the optimum for the first batch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from polytask.balancing.aggregation.imtl_g import imtl_g_weights
from polytask.balancing.base import BalancerOptions, GradientBalancer, Losses
from polytask.balancing.weighting.imtl_l import IMTLOptions, set_from_losses, start_scales


class IMTL(GradientBalancer):
    name = "imtl"
    Options = IMTLOptions
    options: IMTLOptions
    needs_losses = True

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        #: s, one per task (trained with the model; the trainer sets them up per task)
        self.scales = torch.nn.Parameter(torch.zeros(0))
        self._pending: set[int] = set()
        self._head: np.ndarray | None = None

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        start, self._pending = start_scales(self.options.init, len(task_names))
        self.scales = torch.nn.Parameter(start)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.scales]

    def _scales(self, tasks: list[int]) -> np.ndarray:
        if len(self.scales) <= max(tasks):  # used standalone: as many scales as needed
            start, pending = start_scales(self.options.init, max(tasks) + 1)
            start[: len(self.scales)] = self.scales.detach()
            self._pending |= pending - set(range(len(self.scales)))
            self.scales = torch.nn.Parameter(start)
        return self.scales.detach().double().cpu().numpy()[tasks]

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        assert losses is not None
        self._scales(tasks)
        if self._pending:
            set_from_losses(
                self.scales, self._pending, dict(zip(tasks, losses.tolist(), strict=True))
            )
        scale = np.exp(self._scales(tasks))
        alpha = imtl_g_weights(gram * scale[:, None] * scale[None, :])
        # IMTL-L's gradient for the scales: ∂(e^s L - s)/∂s = e^s L - 1 (present tasks)
        grad = torch.zeros_like(self.scales)
        grad[tasks] = torch.as_tensor(scale * losses - 1.0, dtype=grad.dtype)
        self.scales.grad = grad if self.scales.grad is None else self.scales.grad + grad
        self._head = scale
        return alpha * scale

    def head_factors(self, coef: np.ndarray | None, losses: Losses) -> np.ndarray | None:
        return self._head  # each head follows its scaled loss e^(s_t) L_t

    def state(self) -> dict[str, Any]:
        return {"scales": self.scales.detach().tolist(), "pending": sorted(self._pending)}

    def load_state(self, state: dict[str, Any]) -> None:
        saved = torch.tensor(state["scales"], dtype=torch.float32)
        if len(self.scales) != len(saved):
            self.scales = torch.nn.Parameter(torch.zeros(len(saved)))
        with torch.no_grad():
            self.scales.copy_(saved)
        self._pending = set(state.get("pending", []))
