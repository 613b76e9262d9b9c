"""ConFIG (Liu et al. 2024): the conflict-free direction with equal cosine to every task
gradient, scaled by the sum of the gradients' projections onto it.

g_u = Uᵀ (U Uᵀ)⁺ 1 with U the unit task gradients; d = (Σ_i g_iᵀ ĝ_u) ĝ_u."""

from __future__ import annotations

import numpy as np

from polytask.balancing.base import GradientBalancer


class ConFIG(GradientBalancer):
    name = "config"

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        ok = norms > 0
        inv = np.where(ok, 1.0 / np.where(ok, norms, 1.0), 0.0)
        unit_gram = gram * inv[:, None] * inv[None, :]  # U Uᵀ
        cprime = np.linalg.pinv(unit_gram, hermitian=True) @ ok.astype(float)
        coef = inv * cprime  # g_u = Gᵀ coef
        norm_u = float(np.sqrt(max(coef @ gram @ coef, 0.0)))
        if norm_u <= 0:
            return np.zeros_like(coef)
        coef = coef / norm_u  # ĝ_u
        scale = float((gram @ coef).sum())  # Σ_i g_i · ĝ_u
        return scale * coef
