"""DB-MTL (Lin et al. 2023), dual balancing: losses on a log scale (the gradient of
log L_t is g_t / L_t), an exponential moving average ĝ_t of those gradients with rate
β_k = β / k^σ at step k, and every task scaled to the largest norm:
d = Σ_t (max_i ‖ĝ_i‖ / ‖ĝ_t‖) ĝ_t.

The moving average needs gradients of the same parameters at every step, i.e.
``jacobian: parameters``; at representation level (rows differ from batch to batch) the
average is kept over the norms only and the current gradients are scaled by it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer


class DBMTLOptions(BalancerOptions):
    beta: float = Field(0.9, ge=0, lt=1)
    sigma: float = Field(0.5, ge=0)


class DBMTL(GradientBalancer):
    name = "db_mtl"
    Options = DBMTLOptions
    options: DBMTLOptions
    needs_matrix = True
    needs_losses = True

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self.step = 0
        self.ema: dict[int, torch.Tensor] = {}
        self.ema_norm: dict[int, float] = {}
        self.vector_ema = True

    def on_level(self, level: str) -> None:
        # at the representation the rows differ from batch to batch: only the norms are
        # averaged, which the Gramian holds, so the whole matrix is not needed
        self.vector_ema = level == "parameters"
        self.needs_matrix = self.vector_ema

    def _beta(self) -> float:
        self.step += 1
        return self.options.beta / self.step**self.options.sigma

    def coefficients(self, gram: np.ndarray, tasks: list[int]) -> np.ndarray:
        """Representation level: EMA of the log-gradient norms ‖g_t‖ / L_t; the direction
        is Σ_t (max_i n̂_i / n̂_t) g_t / L_t."""
        beta = self._beta()
        losses = np.maximum(self.losses, 1e-12)
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None)) / losses
        for t, n in zip(tasks, norms.tolist(), strict=True):
            prev = self.ema_norm.get(t)
            self.ema_norm[t] = n if prev is None else beta * prev + (1 - beta) * n
        ema = np.array([self.ema_norm[t] for t in tasks])
        weights = ema.max() / np.maximum(ema, 1e-12)
        return weights / losses

    def head_factors(self, tasks: list[int]) -> np.ndarray | None:
        return 1.0 / np.maximum(self.losses, 1e-12)  # heads follow ∇ log L_t = ∇L_t / L_t

    def direction(self, matrix: torch.Tensor, tasks: list[int]) -> torch.Tensor:
        beta = self._beta()
        losses = torch.as_tensor(self.losses, dtype=matrix.dtype, device=matrix.device)
        logg = matrix / losses.clamp_min(1e-12)[:, None]
        rows = []
        for i, t in enumerate(tasks):
            prev = self.ema.get(t)
            if prev is not None and prev.shape == logg[i].shape:
                cur = beta * prev.to(logg.device) + (1 - beta) * logg[i]
            else:
                cur = logg[i].clone()
            self.ema[t] = cur
            rows.append(cur)
        ema = torch.stack(rows)
        norms = ema.norm(dim=1)
        weights = norms.max() / norms.clamp_min(1e-12)
        self.last_weights = dict(zip(tasks, weights.tolist(), strict=True))
        return (weights[:, None] * ema).sum(0)

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "ema_norm": {str(k): v for k, v in self.ema_norm.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.ema_norm = {int(k): float(v) for k, v in state["ema_norm"].items()}

    def state_dict(self) -> dict[str, Any]:
        """Also the moving averages of the (P,) task gradients (parameter level)."""
        ema = {str(k): v for k, v in self.ema.items()}
        return {**super().state_dict(), "ema": ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.ema = {int(k): v.clone() for k, v in state.get("ema", {}).items()}
