"""The synthetic regression tasks of Ma et al. 2018 (MMoE), Section 3, with a knob for how
related the tasks are.

Construction (the paper's, for two tasks):

1. two orthogonal unit vectors ``u1, u2`` in R^d;
2. weights ``w1 = c u1`` and ``w2 = c (p u1 + sqrt(1 - p²) u2)``, so ``cos(w1, w2) = p``;
3. inputs ``x ~ N(0, I_d)``;
4. labels ``y_i = w_iᵀx + Σ_k sin(α_k w_iᵀx + β_k) + ε_i`` with ``ε_i ~ N(0, σ²)``.

``p`` (``correlation``) is the cosine of the two weight vectors: the labels' Pearson
correlation grows with it (it is not equal to it, because of the sinusoids). Defaults:
d = 100 and m = 10 as in the paper, c = 1, the α_k and β_k drawn once from N(0, 1) and
shared by both tasks, σ = 0.1 (the paper's N(0, 0.01) noise). With c = 1 the labels'
Pearson correlation is about 0.1 at p = 0.5 and about 0.7 at p = 0.9.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polytask.errors import PolytaskError


def mmoe_synthetic(
    n: int,
    correlation: float,
    *,
    dim: int = 100,
    scale: float = 1.0,
    sinusoids: int = 10,
    noise: float = 0.1,
    seed: int = 0,
) -> pd.DataFrame:
    """``n`` rows: features ``x0 .. x{dim-1}`` and the regression labels ``y1``, ``y2``.

    The weight vectors and sinusoid parameters depend only on ``seed`` (not on ``n``), so
    two calls with the same seed draw from the same pair of tasks."""
    if not -1.0 <= correlation <= 1.0:
        raise PolytaskError(f"correlation must lie in [-1, 1], got {correlation}")
    if dim < 2:
        raise PolytaskError(f"dim must be at least 2 (two orthogonal directions), got {dim}")
    if n < 1:
        raise PolytaskError(f"n must be at least 1, got {n}")
    task_rng = np.random.default_rng([seed, 0])
    # two orthonormal directions from a QR factorisation of a random d x 2 matrix
    q, _ = np.linalg.qr(task_rng.standard_normal((dim, 2)))
    u1, u2 = q[:, 0], q[:, 1]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(1.0 - correlation**2) * u2)
    alpha = task_rng.standard_normal(sinusoids)
    beta = task_rng.standard_normal(sinusoids)

    data_rng = np.random.default_rng([seed, 1])
    x = data_rng.standard_normal((n, dim))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(dim)])
    for name, w in (("y1", w1), ("y2", w2)):
        z = x @ w
        y = z + np.sin(np.outer(z, alpha) + beta).sum(axis=1)
        df[name] = y + noise * data_rng.standard_normal(n)
    return df


MMOE_TASKS = ["y1:regression", "y2:regression"]


def competing_tasks(
    n: int, *, scale: float = 100.0, noise: float = 0.05, seed: int = 0
) -> pd.DataFrame:
    """Two regression tasks that compete for a narrow shared layer: ``a`` depends on
    ``x0..x3``, ``b`` on ``x4..x7`` and is ``scale`` times larger, so under equal weighting
    ``b``'s loss dominates the shared gradient and starves ``a`` (the balancing tests'
    problem, ``tests/test_balancing_training.py``)."""
    if n < 1:
        raise PolytaskError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    eps = noise * rng.normal(size=(2, n))
    df["a"] = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] + eps[0]
    df["b"] = scale * (np.cos(2 * x[:, 4]) + x[:, 5] * x[:, 6] - 0.5 * x[:, 7] + eps[1])
    return df


#: the competing tasks on their raw scale (no standardising: the scale is the point)
COMPETING_TASKS = [
    {"name": t, "kind": "regression", "standardize": False, "transform": "none"} for t in "ab"
]
