"""The gradient-level methods of issue 13 against their papers' defining properties."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import polytask.balancing as balancing
from polytask.balancing.solvers import SolverWarning, project_simplex, simplex_quadratic
from tests.test_balancing_aggregators import conflicting


@pytest.fixture(autouse=True)
def _solver_warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolverWarning)
        yield


def _weights(m: balancing.GradientBalancer, t: int) -> np.ndarray:
    return np.array([m.last_weights[i] for i in range(t)])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("t", [2, 3, 6])
def test_fairgrad_alpha_one_is_nash_mtl_and_solves_its_fairness_condition(
    seed: int, t: int
) -> None:
    g = conflicting(t, seed=seed)
    fair, nash = balancing.get("fairgrad", alpha=1.0), balancing.get("nash_mtl")
    torch.testing.assert_close(fair.aggregate(g), nash.aggregate(g), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(_weights(fair, t), _weights(nash, t), rtol=1e-7)
    k = (g @ g.T).numpy()
    for alpha in (0.5, 2.0, 5.0):  # K w = w^(-1/alpha), w > 0
        m = balancing.get("fairgrad", alpha=alpha)
        d = m.aggregate(g)
        w = _weights(m, t)
        assert (w > 0).all()
        np.testing.assert_allclose(k @ w, w ** (-1 / alpha), rtol=1e-5)
        torch.testing.assert_close(d, torch.as_tensor(w) @ g)


def test_fairgrad_large_alpha_lifts_the_worst_task() -> None:
    """α-fairness: as α grows the smallest improvement rate g_iᵀd / ‖d‖ grows."""
    g = conflicting(5, seed=1)
    worst = []
    for alpha in (0.5, 1.0, 4.0, 16.0):
        d = balancing.get("fairgrad", alpha=alpha).aggregate(g)
        worst.append(float((g @ d).min() / d.norm()))
    assert worst == sorted(worst)


@pytest.mark.parametrize("seed", range(4))
def test_sdmgrad_lambda_zero_is_mgda_and_solves_its_quadratic(seed: int) -> None:
    g = conflicting(5, seed=seed)
    torch.testing.assert_close(
        balancing.get("sdmgrad", lam=0.0).aggregate(g),
        balancing.get("mgda").aggregate(g),
        rtol=1e-4,
        atol=1e-6,
    )
    lam, t = 0.3, 5
    m = balancing.get("sdmgrad", lam=lam)
    d = m.aggregate(g)
    coef = _weights(m, t)
    w = coef * (1 + lam) - lam / t  # d = (G w + λ g0) / (1 + λ)
    assert w.min() >= -1e-9 and abs(w.sum() - 1) < 1e-9
    # KKT of min ½‖Gw + λ g0‖² on the simplex: (Gᵀ(Gw + λ g0))_i >= wᵀ(...) , = on support
    k = (g @ g.T).numpy()
    grad = k @ w + lam * k @ np.full(t, 1 / t)
    scale = float(np.abs(np.diag(k)).max())
    assert (grad >= grad @ w - 1e-5 * scale).all()
    np.testing.assert_allclose(grad[w > 1e-7], grad @ w, rtol=1e-4)
    torch.testing.assert_close(d, (torch.as_tensor(w) @ g + lam * g.mean(0)) / (1 + lam))


def test_modo_one_projected_step_and_its_fixed_point() -> None:
    g = conflicting(4, seed=2) / 10
    k = (g @ g.T).numpy()
    gamma, rho = 0.05, 0.1
    m = balancing.get("modo", gamma=gamma, rho=rho)
    d = m.aggregate(g)
    lam0 = np.full(4, 0.25)
    step = lam0 - gamma * (k @ lam0 + rho * lam0)
    lam1 = project_simplex(step)
    np.testing.assert_allclose(_weights(m, 4), lam1, rtol=1e-12)
    torch.testing.assert_close(d, torch.as_tensor(lam1) @ g)
    for _ in range(3000):  # on a fixed K: the regularised min-norm weights
        m.aggregate(g)
    best = simplex_quadratic(k + rho * np.eye(4), np.zeros(4), "test", tol=1e-12)
    np.testing.assert_allclose(_weights(m, 4), best, atol=1e-6)


def test_moco_tracks_the_gradients_and_weighs_the_tracked_ones() -> None:
    g0, g1 = conflicting(3, seed=4), conflicting(3, seed=5)
    beta, gamma, rho = 0.3, 0.05, 0.1
    m = balancing.get("moco", beta=beta, gamma=gamma, rho=rho)
    m.aggregate(g0)  # the first gradients start the track
    lam0 = _weights(m, 3)
    d = m.aggregate(g1)
    y = (1 - beta) * g0 + beta * g1
    yy = (y @ y.T).numpy()
    lam1 = project_simplex(lam0 - gamma * (yy @ lam0 + rho * lam0))
    np.testing.assert_allclose(_weights(m, 3), lam1, rtol=1e-10)
    torch.testing.assert_close(d, torch.as_tensor(lam1) @ y)
    # representation level: the Gramian is tracked instead, and the weights apply to G
    r = balancing.get("moco", beta=beta, gamma=gamma, rho=rho)
    first = r.weigh(g0 @ g0.T)
    c = r.weigh(g1 @ g1.T)
    kbar = (g0 @ g0.T + beta * (g1 @ g1.T - g0 @ g0.T)).numpy()
    np.testing.assert_allclose(c, project_simplex(first - gamma * (kbar @ first + rho * first)))


@pytest.mark.parametrize("seed", range(3))
def test_krum_and_trimmed_mean_ignore_an_outlier_row(seed: int) -> None:
    inliers = conflicting(7, seed=seed) / 5 + 3.0  # a cluster
    gen = torch.Generator().manual_seed(seed)
    outs = []
    for scale in (50.0, -400.0):
        outlier = scale * torch.randn(1, inliers.shape[1], generator=gen, dtype=torch.float64)
        g = torch.cat([inliers, outlier])
        krum = balancing.get("krum", f=1)
        d = krum.aggregate(g)
        assert krum.last_weights[7] == 0.0  # the outlier is never chosen
        assert any(torch.equal(d, row) for row in inliers)
        trimmed = balancing.get("trimmed_mean", trim=1).aggregate(g)
        # per coordinate, within the inliers' range: the outlier's value was dropped
        assert (trimmed <= inliers.max(0).values + 1e-12).all()
        assert (trimmed >= inliers.min(0).values - 1e-12).all()
        outs.append((d, trimmed))
    torch.testing.assert_close(outs[0][0], outs[1][0])  # Krum: unchanged by the outlier
    # multi-Krum averages the m best-scored rows
    g = torch.cat([inliers, 1e3 * torch.ones(1, inliers.shape[1], dtype=torch.float64)])
    multi = balancing.get("krum", f=1, m=3)
    d = multi.aggregate(g)
    kept = [i for i, w in multi.last_weights.items() if w > 0]
    assert len(kept) == 3 and 7 not in kept
    torch.testing.assert_close(d, g[kept].mean(0))


def test_trimmed_mean_is_the_coordinatewise_mean_without_the_extremes() -> None:
    g = conflicting(6, p=50, seed=9)
    d = balancing.get("trimmed_mean", trim=2).aggregate(g)
    torch.testing.assert_close(d, g.sort(dim=0).values[2:4].mean(0))


def test_rgw_weights_are_random_points_of_the_simplex() -> None:
    g = conflicting(4, seed=3)
    m = balancing.get("rgw", seed=0)
    draws = []
    for _ in range(2000):
        d = m.aggregate(g)
        w = _weights(m, 4)
        draws.append(w)
    assert abs(w.sum() - 1) < 1e-12 and (w > 0).all()
    torch.testing.assert_close(d, torch.as_tensor(w) @ g)
    draws_arr = np.array(draws)
    np.testing.assert_allclose(draws_arr.mean(0), 0.25, atol=0.01)  # symmetric: mean 1/T
    assert draws_arr.std(0).min() > 0.05  # and really random


def test_excess_mtl_weighs_up_the_larger_excess_risk() -> None:
    eta = 0.5
    m = balancing.get("excess_mtl", eta=eta)
    g = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]], dtype=torch.float64)
    m.aggregate(g)  # the first step records the initial risks, weights stay 1
    assert m.last_weights == {0: 1.0, 1: 1.0}
    acc = g * g
    r0 = ((g * g) / (acc + 1e-7).sqrt()).sum(1)
    g2 = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.3, 0.0]], dtype=torch.float64)  # b learnt
    acc = acc + g2 * g2
    r = ((g2 * g2) / (acc + 1e-7).sqrt()).sum(1) / r0
    d = m.aggregate(g2)  # a step's risks move the weights it uses
    w = torch.exp(eta * r)
    w = w * 2 / w.sum()
    assert m.last_weights[0] == pytest.approx(float(w[0]), rel=1e-9)
    assert m.last_weights[0] > 1 > m.last_weights[1]  # a keeps more excess risk
    torch.testing.assert_close(d, w @ g2)


@pytest.mark.parametrize("seed", range(3))
def test_imtl_weighs_scaled_gradients_with_equal_projections(seed: int) -> None:
    g = conflicting(3, seed=seed)
    losses = np.array([0.5, 2.0, 8.0])
    m = balancing.get("imtl", init=0.0)
    m.setup(["a", "b", "c"])
    with torch.no_grad():
        m.scales.copy_(torch.tensor([0.3, -0.2, 0.1]))
    d = m.aggregate(g, losses=losses)
    scale = torch.exp(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
    coef = torch.tensor([m.last_weights[i] for i in range(3)], dtype=torch.float64)
    alpha = coef / scale
    assert float(alpha.sum()) == pytest.approx(1.0)  # IMTL-G's weights on e^s g
    proj = (g / g.norm(dim=1, keepdim=True)) @ d
    torch.testing.assert_close(proj, proj.mean().expand(3), rtol=1e-7, atol=1e-9)
    # IMTL-L's gradient for the scales: e^s L - 1
    torch.testing.assert_close(
        m.scales.grad.double(), scale * torch.as_tensor(losses) - 1, rtol=1e-6, atol=1e-6
    )
    # by default s starts where every scaled loss is 1
    fresh = balancing.get("imtl")
    fresh.setup(["a", "b", "c"])
    fresh.aggregate(g, losses=losses)
    np.testing.assert_allclose(np.exp(fresh.scales.detach().double().numpy()) * losses, 1.0)
