"""FairGrad (Ban and Ji 2024): the update d = Σ_i w_i g_i whose weights make every task's
rate of improvement g_iᵀ d equal to w_i^(-1/α), the first-order condition of α-fair
utility maximisation: K w = w^(-1/α) elementwise, w > 0.

α = 1 is proportional fairness, i.e. Nash-MTL's K w = 1/w; α -> ∞ approaches MGDA-like
max-min fairness, α -> 0 the plain mean. The system is the stationarity condition of the
strictly convex φ(w) = ½ wᵀKw - Σ_i h(w_i) with h'(w) = w^(-1/α) (h = log w at α = 1,
w^(1-1/α) / (1-1/α) otherwise), so Newton's method on φ solves it exactly (the paper's
code calls scipy's least squares on the same residual)."""

from __future__ import annotations

import warnings

import numpy as np
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer
from polytask.balancing.solvers import TOLERANCE, SolverWarning


class FairGradOptions(BalancerOptions):
    #: the fairness α: 1 is proportional fairness (Nash-MTL), larger is closer to max-min
    alpha: float = Field(1.0, gt=0)
    #: relative tolerance of K w = w^(-1/α)
    tol: float = Field(1e-6, gt=0)


def _potential(k: np.ndarray, w: np.ndarray, p: float) -> float:
    h = np.log(w) if p == 1 else w ** (1 - p) / (1 - p)
    return float(0.5 * w @ k @ w - h.sum())


def fair_weights(gram: np.ndarray, alpha: float, tol: float = TOLERANCE) -> np.ndarray:
    """w > 0 with K w = w^(-1/α), by damped Newton steps on φ that keep w > 0.

    K is scaled to unit largest diagonal first: if K' u = u^(-p) (p = 1/α) for K = s K',
    then w = s^(-1/(1+p)) u solves the original system."""
    p = 1.0 / alpha
    diag = np.abs(np.diag(gram))
    s = float(diag.max()) if diag.size and diag.max() > 0 else 1.0
    k = gram / s
    u = np.clip(np.diag(k), 1e-12, None) ** (-1.0 / (1.0 + p))  # each task alone
    for _ in range(200):
        resid = k @ u - u ** (-p)
        if np.abs(resid * u).max() < tol:
            return u * s ** (-1.0 / (1.0 + p))
        hess = k + np.diag(p * u ** (-p - 1))
        try:
            step = -np.linalg.solve(hess, resid)
        except np.linalg.LinAlgError:
            break
        neg = step < 0
        eta = min(1.0, 0.99 * float(np.min(-u[neg] / step[neg]))) if neg.any() else 1.0
        phi = _potential(k, u, p)
        while eta > 1e-12:  # Armijo backtracking on the convex potential
            cand = u + eta * step
            if (cand > 0).all() and _potential(k, cand, p) <= phi + 1e-4 * eta * (resid @ step):
                break
            eta *= 0.5
        u = u + eta * step
    worst = float(np.abs((k @ u - u ** (-p)) * u).max())
    warnings.warn(
        f"FairGrad: K w = w^(-1/alpha) holds only to {worst:.2e} (tolerance {tol:.0e}); the "
        "task gradients may be linearly dependent",
        SolverWarning,
        stacklevel=3,
    )
    return u * s ** (-1.0 / (1.0 + p))


class FairGrad(GradientBalancer):
    name = "fairgrad"
    Options = FairGradOptions
    options: FairGradOptions

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        return fair_weights(gram, self.options.alpha, self.options.tol)
