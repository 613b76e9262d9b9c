"""Exact solvers for the small problems inside gradient-balancing methods.

Every problem here is over T variables (T = number of tasks, a few dozen at most) and is
posed on the T x T Gramian K = G Gᵀ of the task gradients, never on the (T, P) matrix.
Each solver checks its own optimality conditions to a stated tolerance and, when they do
not hold, says so with :class:`SolverWarning`; none falls back to another method.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import nnls

#: relative tolerance of the optimality (KKT) checks
TOLERANCE = 1e-6


class SolverWarning(RuntimeWarning):
    """A solver stopped before its optimality conditions held to the stated tolerance."""


def _factor(gram: np.ndarray) -> np.ndarray:
    """A with AᵀA = K (K symmetric PSD), from the eigendecomposition."""
    vals, vecs = np.linalg.eigh((gram + gram.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))).T


def _scale(gram: np.ndarray) -> float:
    s = float(np.abs(np.diag(gram)).max()) if gram.size else 0.0
    return s if s > 0 else 1.0


def nonneg_quadratic(
    gram: np.ndarray, offset: np.ndarray, name: str, tol: float = TOLERANCE
) -> np.ndarray:
    """argmin over v >= offset of vᵀ K v; see :func:`dual_cone_solutions`."""
    return dual_cone_solutions(gram, offset[None, :], name, tol)[0]


def dual_cone_solutions(
    gram: np.ndarray, offsets: np.ndarray, name: str, tol: float = TOLERANCE
) -> np.ndarray:
    """For each row u of ``offsets``: argmin over v >= u of vᵀ K v (Lawson-Hanson active
    set, exact up to rounding); Gᵀ v is then the projection of Gᵀ u onto the dual cone.

    Substituting v = u + x, x >= 0 gives the NNLS problem min ||A x + A u||² with
    AᵀA = K (factored once). Returns the v as rows; warns when the KKT conditions fail by
    more than ``tol`` (relative to the largest diagonal entry of K)."""
    a = _factor(gram)  # once for every offset
    out = np.empty_like(offsets, dtype=np.float64)
    for r, offset in enumerate(offsets):
        try:
            x, _ = nnls(a, -a @ offset, maxiter=50 * max(1, gram.shape[0]))
        except RuntimeError as err:  # iteration limit
            warnings.warn(f"{name}: NNLS did not converge ({err})", SolverWarning, stacklevel=3)
            x = np.zeros_like(offset)
        out[r] = offset + x
    # KKT of each problem: x >= 0, K v >= 0, xᵀ K v = 0 (relative to K's scale)
    grads = out @ gram
    xs = out - offsets
    scale = _scale(gram) * max(1.0, float(np.abs(out).max()))
    worst = max(float(-grads.min()), float(np.abs((xs * grads).sum(1)).max()), 0.0) / scale
    if worst > tol or (xs < -tol).any():
        warnings.warn(
            f"{name}: KKT conditions hold only to {worst:.2e} (tolerance {tol:.0e})",
            SolverWarning,
            stacklevel=3,
        )
    return out


def min_norm_weights(gram: np.ndarray, tol: float = TOLERANCE) -> np.ndarray:
    """Weights α on the simplex minimising ||αᵀG||² (the min-norm point of the hull).

    Exact reduction to NNLS: β* = argmin_{β>=0} ||Gᵀβ||² + (1 - 1ᵀβ)² is a positive multiple
    of α*, because for a fixed direction α the best scale s = 1/(1+||αᵀG||²) leaves the
    objective ||αᵀG||² / (1 + ||αᵀG||²), increasing in ||αᵀG||²."""
    t = gram.shape[0]
    scale = _scale(gram)
    k = gram / scale  # conditioning: the solution is invariant to scaling K
    a = np.vstack([_factor(k), np.ones((1, t))])
    b = np.zeros(t + 1)
    b[-1] = 1.0
    try:
        beta, _ = nnls(a, b, maxiter=50 * max(1, t))
    except RuntimeError as err:
        warnings.warn(f"MGDA: NNLS did not converge ({err})", SolverWarning, stacklevel=3)
        return np.full(t, 1.0 / t)
    total = beta.sum()
    if total <= 0:
        warnings.warn("MGDA: degenerate solution", SolverWarning, stacklevel=3)
        return np.full(t, 1.0 / t)
    alpha = beta / total
    # KKT of min αᵀKα on the simplex: (Kα)_i >= αᵀKα for all i, equality where α_i > 0
    grad = k @ alpha
    value = float(alpha @ grad)
    gap = float(value - grad.min())
    if gap > tol * max(1.0, float(np.abs(np.diag(k)).max())):
        warnings.warn(f"MGDA: KKT gap {gap:.2e} > {tol:.0e}", SolverWarning, stacklevel=3)
    return alpha


def nash_weights(
    gram: np.ndarray, tol: float = TOLERANCE, max_iter: int = 100, ridge: float = 0.0
) -> np.ndarray:
    """α > 0 with K α = 1/α (Nash-MTL's bargaining solution), by Newton's method.

    It is the minimiser of the strictly convex φ(α) = ½αᵀKα - Σ log α_i; Newton steps with
    a fraction-to-the-boundary rule keep α > 0 and converge quadratically. K is scaled to
    unit diagonal maximum first (α scales by 1/√s). Warns when ||Kα - 1/α||∞ stays above
    ``tol`` relative to the scale (e.g. K singular with a non-negative null vector, where
    no solution exists)."""
    t = gram.shape[0]
    s = _scale(gram)
    k = gram / s + ridge * np.eye(t)
    alpha = 1.0 / np.sqrt(np.clip(np.diag(k), 1e-12, None))
    for _ in range(max_iter):
        resid = k @ alpha - 1.0 / alpha
        if np.abs(resid * alpha).max() < tol:
            return alpha / np.sqrt(s)
        hess = k + np.diag(1.0 / alpha**2)
        try:
            step = -np.linalg.solve(hess, resid)
        except np.linalg.LinAlgError:
            break
        # largest step keeping α > 0, then backtrack on φ
        neg = step < 0
        lim = float(np.min(-alpha[neg] / step[neg])) if neg.any() else np.inf
        eta = min(1.0, 0.99 * lim)
        phi = 0.5 * alpha @ k @ alpha - np.log(alpha).sum()
        while eta > 1e-12:
            cand = alpha + eta * step
            if (cand > 0).all():
                phi_c = 0.5 * cand @ k @ cand - np.log(cand).sum()
                if phi_c <= phi + 1e-4 * eta * float(resid @ step):
                    break
            eta *= 0.5
        alpha = alpha + eta * step
    resid = np.abs((k @ alpha - 1.0 / alpha) * alpha).max()
    warnings.warn(
        f"Nash-MTL: Kα = 1/α holds only to {resid:.2e} (tolerance {tol:.0e}); the task "
        "gradients may be linearly dependent",
        SolverWarning,
        stacklevel=3,
    )
    return alpha / np.sqrt(s)


def cagrad_weights(
    gram: np.ndarray, c: float, tol: float = TOLERANCE, max_iter: int = 2000
) -> np.ndarray:
    """w on the simplex minimising F(w) = wᵀK b + c‖g0‖ √(wᵀKw), b = 1/T (CAGrad's dual).

    Accelerated projected gradient (FISTA, restarted whenever F goes up) with a
    Frank-Wolfe duality gap as the stopping rule: the gap bounds F(w) - F* from above, so
    stopping at gap <= tol·scale is exact to that tolerance."""
    t = gram.shape[0]
    s = _scale(gram)
    k = gram / s
    b = np.full(t, 1.0 / t)
    kb = k @ b
    g0 = float(np.sqrt(max(b @ kb, 0.0)))
    cc = c * g0
    lip = float(np.linalg.eigvalsh(k).max()) + 1e-12
    step = 1.0 / (lip * (1.0 + cc / max(g0, 1e-8)) + 1e-12)

    w = _cagrad_active_set(k, kb, cc)
    if w is None:
        w = b.copy()
    # K v is linear in v, so the momentum point's K y comes from the iterates' K w: one
    # product with K per iteration
    kw = k @ w
    y, ky = w, kw
    momentum = 1.0
    value = float(w @ kb + cc * np.sqrt(max(w @ kw, 0.0)))
    gap = np.inf
    for _ in range(max_iter):
        grad = kb + cc * kw / np.sqrt(max(float(w @ kw), 1e-18))
        gap = float(grad @ w - grad.min())
        if gap <= tol:
            return w
        grad_y = kb + cc * ky / np.sqrt(max(float(y @ ky), 1e-18))
        nxt = _project_simplex(y - step * grad_y)
        k_nxt = k @ nxt
        nxt_value = float(nxt @ kb + cc * np.sqrt(max(float(nxt @ k_nxt), 0.0)))
        if nxt_value > value:  # momentum overshot: restart from w
            y, ky, momentum = w, kw, 1.0
            continue
        following = (1.0 + np.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
        beta = (momentum - 1.0) / following
        y, ky = nxt + beta * (nxt - w), k_nxt + beta * (k_nxt - kw)
        w, kw, momentum, value = nxt, k_nxt, following, nxt_value
    warnings.warn(f"CAGrad: duality gap {gap:.2e} > {tol:.0e}", SolverWarning, stacklevel=3)
    return w


def _cagrad_active_set(k: np.ndarray, kb: np.ndarray, cc: float) -> np.ndarray | None:
    """CAGrad's dual solved on a guessed support S, a starting point that the caller's
    duality gap then certifies (or improves). On S the optimality conditions
    (Kb)_S + cc (K w)_S / ‖w‖_K = λ 1 and 1ᵀw = 1 give, with u = K_SS⁻¹ 1 and
    v = K_SS⁻¹ (Kb)_S, w_S ∝ λu - v where λ solves the quadratic
    (λu - v)ᵀ K_SS (λu - v) = cc². S starts as every task; the most negative weight
    leaves it, the most violated condition outside it joins. None when K_SS is singular."""
    t = k.shape[0]
    support = list(range(t))
    for _ in range(2 * t):
        ks = k[np.ix_(support, support)]
        try:
            sol = np.linalg.solve(ks, np.stack([np.ones(len(support)), kb[support]], axis=1))
        except np.linalg.LinAlgError:
            return None
        u, v = sol[:, 0], sol[:, 1]
        a, beta, gamma = u.sum(), v.sum(), float(kb[support] @ v)
        disc = beta * beta - a * (gamma - cc * cc)
        if not (a > 0 and disc > 0):
            return None
        root = np.sqrt(disc)
        ws = (((beta + root) / a) * u - v) / root  # sums to 1
        if ws.min() < 0:
            del support[int(np.argmin(ws))]
            if not support:
                return None
            continue
        w = np.zeros(t)
        w[support] = ws
        kw = k @ w
        grad = kb + cc * kw / np.sqrt(max(float(w @ kw), 1e-18))
        lam = float(grad[support].mean())
        outside = [i for i in range(t) if i not in set(support)]
        if not outside:
            return w
        worst = min(outside, key=lambda i: grad[i])
        if grad[worst] >= lam - 1e-12 * max(1.0, abs(lam)):
            return w
        support = sorted([*support, worst])
    return None


def _project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (sort-based, exact)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    idx = np.arange(1, v.size + 1)
    rho = int(np.nonzero(u - css / idx > 0)[0][-1])
    theta = css[rho] / (rho + 1)
    return np.maximum(v - theta, 0.0)


def simplex_quadratic(
    q: np.ndarray, c: np.ndarray, name: str, tol: float = TOLERANCE, max_iter: int = 2000
) -> np.ndarray:
    """w on the simplex minimising ½ wᵀ Q w + cᵀ w (Q symmetric PSD, T x T).

    Accelerated projected gradient (FISTA, restarted when the objective goes up) finds
    the support; the KKT system on that support (Q_SS w_S + c_S = μ 1, 1ᵀ w_S = 1) then
    gives the exact minimiser, which is kept when it is feasible and no task outside the
    support has (Q w + c)_i < μ (an active-set step fixes the support otherwise). The
    Frank-Wolfe duality gap ∇ᵀw - min ∇ certifies the result; :class:`SolverWarning`
    when it stays above ``tol`` (relative to the problem's scale)."""
    s = max(_scale(q), float(np.abs(c).max()) if c.size else 0.0, 1e-30)
    q, c = (q + q.T) / (2 * s), c / s
    w = _simplex_fista(q, c, tol, max_iter)
    exact = _simplex_active_set(q, c, w)
    if exact is not None:
        return exact
    grad = q @ w + c
    gap = float(grad @ w - grad.min())
    if gap > tol:
        warnings.warn(f"{name}: duality gap {gap:.2e} > {tol:.0e}", SolverWarning, stacklevel=3)
    return w


def _simplex_fista(q: np.ndarray, c: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    t = q.shape[0]
    lip = float(np.linalg.eigvalsh(q).max()) + 1e-12
    w = np.full(t, 1.0 / t)
    y, momentum = w, 1.0
    value = 0.5 * w @ q @ w + c @ w
    for _ in range(max_iter):
        grad = q @ w + c
        if float(grad @ w - grad.min()) <= tol * 1e-3:
            break
        nxt = _project_simplex(y - (q @ y + c) / lip)
        nxt_value = 0.5 * nxt @ q @ nxt + c @ nxt
        if nxt_value > value:  # momentum overshot: restart from w
            if y is w:
                break
            y, momentum = w, 1.0
            continue
        following = (1.0 + np.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
        y = nxt + ((momentum - 1.0) / following) * (nxt - w)
        w, momentum, value = nxt, following, nxt_value
    return w


def _simplex_active_set(q: np.ndarray, c: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """The exact minimiser from the support of ``start`` (None when the KKT conditions
    cannot be met within 3T support changes)."""
    t = q.shape[0]
    support = [i for i in range(t) if start[i] > 1e-9] or list(range(t))
    for _ in range(3 * t):
        n = len(support)
        kkt = np.zeros((n + 1, n + 1))
        kkt[:n, :n] = q[np.ix_(support, support)]
        kkt[:n, n], kkt[n, :n] = -1.0, 1.0
        sol = np.linalg.lstsq(kkt, np.concatenate([-c[support], [1.0]]), rcond=None)[0]
        ws, mu = sol[:n], float(sol[n])
        if np.abs(kkt @ sol - np.concatenate([-c[support], [1.0]])).max() > 1e-9:
            return None  # inconsistent on this support
        if ws.min() < -1e-12:
            del support[int(np.argmin(ws))]
            if not support:
                return None
            continue
        w = np.zeros(t)
        w[support] = np.maximum(ws, 0.0)
        grad = q @ w + c
        outside = [i for i in range(t) if i not in set(support)]
        worst = min(outside, key=lambda i: grad[i]) if outside else None
        if worst is None or grad[worst] >= mu - 1e-10:
            return w / w.sum()
        support = sorted([*support, worst])
    return None


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (for methods that take one
    projected step on their weights, MoDo and MoCo)."""
    return _project_simplex(v)
