"""DB-MTL (Lin et al. 2023), dual balancing: losses on a log scale (the gradient of
log L_t is g_t / L_t), an exponential moving average ĝ_t of those gradients with rate
β_k = β / k^σ at step k, and every task scaled to the largest norm:
d = Σ_t (max_i ‖ĝ_i‖ / ‖ĝ_t‖) ĝ_t.

The moving average needs gradients of the same parameters at every step, i.e.
``jacobian: parameters``; at representation level (rows differ from batch to batch) the
average is kept over the norms only and the current gradients are scaled by it."""

from __future__ import annotations

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
        self.vector_ema = level == "parameters"

    def direction(self, matrix: torch.Tensor, tasks: list[int]) -> torch.Tensor:
        self.step += 1
        beta = self.options.beta / self.step**self.options.sigma
        losses = torch.as_tensor(self.losses, dtype=matrix.dtype, device=matrix.device)
        logg = matrix / losses.clamp_min(1e-12)[:, None]
        if not self.vector_ema:
            norms_now = logg.norm(dim=1).tolist()
            for t, n in zip(tasks, norms_now, strict=True):
                prev_n = self.ema_norm.get(t)
                self.ema_norm[t] = n if prev_n is None else beta * prev_n + (1 - beta) * n
            norms = torch.tensor(
                [self.ema_norm[t] for t in tasks], dtype=matrix.dtype, device=matrix.device
            )
            weights = norms.max() / norms.clamp_min(1e-12)
            self.last_weights = dict(zip(tasks, weights.tolist(), strict=True))
            return (weights[:, None] * logg).sum(0)
        rows = []
        for i, t in enumerate(tasks):
            prev = self.ema.get(t)
            if prev is not None and prev.shape == logg[i].shape:
                cur = beta * prev + (1 - beta) * logg[i]
            else:
                cur = logg[i].clone()
            self.ema[t] = cur
            rows.append(cur)
        ema = torch.stack(rows)
        norms = ema.norm(dim=1)
        weights = norms.max() / norms.clamp_min(1e-12)
        self.last_weights = dict(zip(tasks, weights.tolist(), strict=True))
        return (weights[:, None] * ema).sum(0)
