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
from polytask.balancing.jacobian import TaskJacobian


class DBMTLOptions(BalancerOptions):
    beta: float = Field(0.9, ge=0, lt=1)
    sigma: float = Field(0.5, ge=0)


class DBMTL(GradientBalancer):
    name = "db_mtl"
    Options = DBMTLOptions
    options: DBMTLOptions
    needs_matrix = True
    needs_losses = True
    head_loss = "log"  # heads follow ∇ log L_t = ∇L_t / L_t

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        self.step = 0
        #: moving averages of ∇ log L_t at parameter level, one row per task index
        self._ema: torch.Tensor | None = None
        self._seen: list[bool] = []
        self.ema_norm: dict[int, float] = {}

    def needs_matrix_at(self, level: str) -> bool:
        # at the representation the rows differ from batch to batch: only the norms are
        # averaged, which the Gramian holds, so the whole matrix is not needed
        return level == "parameters"

    def _beta(self) -> float:
        self.step += 1
        return self.options.beta / self.step**self.options.sigma

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        """Representation level: EMA of the log-gradient norms ‖g_t‖ / L_t; the direction
        is Σ_t (max_i n̂_i / n̂_t) g_t / L_t."""
        beta = self._beta()
        assert losses is not None
        losses = np.maximum(losses, 1e-12)
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None)) / losses
        for t, n in zip(tasks, norms.tolist(), strict=True):
            prev = self.ema_norm.get(t)
            self.ema_norm[t] = n if prev is None else beta * prev + (1 - beta) * n
        ema = np.array([self.ema_norm[t] for t in tasks])
        weights = ema.max() / np.maximum(ema, 1e-12)
        return weights / losses

    def direction(
        self, jac: TaskJacobian, tasks: list[int], losses: np.ndarray | None
    ) -> torch.Tensor:
        matrix = jac.matrix()
        beta = self._beta()
        inv = 1.0 / torch.as_tensor(losses, dtype=matrix.dtype, device=matrix.device)
        inv = inv.clamp_max(1e12)[:, None]  # ∇ log L_t = g_t / L_t
        ema = self._ema_rows(matrix, tasks)
        if all(self._seen[t] for t in tasks) and tasks == list(range(ema.shape[0])):
            rows = ema.mul_(beta).addcmul_(matrix, inv, value=1 - beta)  # in place, one pass
        else:
            idx = torch.as_tensor(tasks, device=matrix.device)
            seen = torch.as_tensor([self._seen[t] for t in tasks], device=matrix.device)
            cur = matrix * inv
            rows = torch.where(seen[:, None], beta * ema[idx] + (1 - beta) * cur, cur)
            ema[idx] = rows
            for t in tasks:
                self._seen[t] = True
        norms = torch.linalg.vector_norm(rows, dim=1)
        weights = norms.max() / norms.clamp_min(1e-12)
        self.last_weights = dict(zip(tasks, weights.tolist(), strict=True))
        return weights @ rows

    def _ema_rows(self, matrix: torch.Tensor, tasks: list[int]) -> torch.Tensor:
        """The (tasks seen, P) moving averages; restarted when P changes."""
        need = max(tasks) + 1
        ema = self._ema
        if ema is None or ema.shape[1] != matrix.shape[1] or ema.device != matrix.device:
            ema = matrix.new_zeros(need, matrix.shape[1])
            self._seen = [False] * need
        elif ema.shape[0] < need:
            ema = torch.cat([ema, ema.new_zeros(need - ema.shape[0], ema.shape[1])])
            self._seen += [False] * (need - len(self._seen))
        self._ema = ema
        return ema

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "ema_norm": {str(k): v for k, v in self.ema_norm.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.ema_norm = {int(k): float(v) for k, v in state["ema_norm"].items()}

    def state_dict(self) -> dict[str, Any]:
        """Also the moving averages of the (P,) task gradients (parameter level)."""
        rows, seen = self._ema, self._seen
        ema = {} if rows is None else {str(t): rows[t].clone() for t, s in enumerate(seen) if s}
        return {**super().state_dict(), "ema": ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = {int(k): v for k, v in state.get("ema", {}).items()}
        self._ema, self._seen = None, []
        if saved:
            width = next(iter(saved.values())).numel()
            self._ema = torch.zeros(max(saved) + 1, width, dtype=next(iter(saved.values())).dtype)
            self._seen = [False] * self._ema.shape[0]
            for t, row in saved.items():
                self._ema[t] = row
                self._seen[t] = True
