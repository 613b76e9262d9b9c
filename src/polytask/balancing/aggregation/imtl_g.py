"""IMTL-G (Liu et al. 2021): the combination of task gradients whose projections onto
every unit task gradient are equal, with weights summing to one.

With D rows g_1 - g_t and U rows u_1 - u_t (t = 2..T, u = g/‖g‖), the weights are
α_{2..T} = g_1 Uᵀ (D Uᵀ)⁻¹ and α_1 = 1 - Σ α_t; all these products come from the
Gramian."""

from __future__ import annotations

import numpy as np

from polytask.balancing.base import GradientBalancer


def imtl_g_weights(gram: np.ndarray) -> np.ndarray:
    """The IMTL-G weights of the gradients with Gramian ``gram`` (they sum to one)."""
    t = gram.shape[0]
    if t == 1:
        return np.ones(1)
    norms = np.sqrt(np.clip(np.diag(gram), 1e-30, None))
    gu = gram / norms[None, :]  # gu[i, j] = g_i · u_j
    # g_1 · (u_1 - u_t)
    lhs = gu[0, 0] - gu[0, 1:]
    # (g_1 - g_s) · (u_1 - u_t) for s, t = 2..T
    du = gu[0, 0] - gu[0, 1:][None, :] - gu[1:, 0][:, None] + gu[1:, 1:]
    alpha_rest = np.linalg.lstsq(du.T, lhs, rcond=None)[0]
    return np.concatenate([[1.0 - alpha_rest.sum()], alpha_rest])


class IMTLG(GradientBalancer):
    name = "imtl_g"

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        return imtl_g_weights(gram)
