"""Each gradient-level method against its defining property, on random matrices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import polytask.balancing as balancing
from polytask.balancing.solvers import SolverWarning

#: the methods that work standalone on a (T, P) matrix, from the registry
GRADIENT_METHODS = [
    name
    for name, cls in balancing.METHODS.items()
    if cls.level == "gradient" and not cls.needs_losses  # type: ignore[attr-defined]
]
#: gradient methods with a ``seed`` option
STOCHASTIC = [
    name for name in GRADIENT_METHODS if "seed" in balancing.METHODS[name].Options.model_fields
]


def conflicting(t: int, p: int = 40, seed: int = 0) -> torch.Tensor:
    """Task gradients with real conflicts: a shared part plus large task-specific parts."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(1, p, generator=g, dtype=torch.float64)
    own = torch.randn(t, p, generator=g, dtype=torch.float64) * 2.0
    scales = torch.rand(t, 1, generator=g, dtype=torch.float64) * 5 + 0.2
    return (shared + own) * scales


@pytest.fixture(autouse=True)
def _solver_warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolverWarning)
        yield


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t", [2, 3, 7])
def test_mgda_is_min_norm_point_of_hull(seed: int, t: int) -> None:
    g = conflicting(t, seed=seed)
    m = balancing.get("mgda")
    d = m.aggregate(g)
    alpha = np.array([m.last_weights[i] for i in range(t)])
    assert alpha.min() >= -1e-10 and abs(alpha.sum() - 1) < 1e-8
    # KKT: g_i · d >= ||d||² for all i, with equality on the support
    dots = (g @ d).numpy()
    sq = float(d @ d)
    assert (dots >= sq - 1e-6 * max(1.0, sq)).all()
    support = alpha > 1e-8
    np.testing.assert_allclose(dots[support], sq, rtol=1e-5, atol=1e-6)
    # no point of the hull sampled at random is shorter
    rng = np.random.default_rng(seed)
    for _ in range(200):
        w = rng.dirichlet(np.ones(t))
        assert float(torch.as_tensor(w) @ g @ (torch.as_tensor(w) @ g)) >= sq - 1e-9


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t", [2, 4, 8])
def test_dual_cone_directions_do_not_conflict(name: str, seed: int, t: int) -> None:
    g = conflicting(t, seed=seed)
    d = balancing.get(name).aggregate(g)
    dots = g @ d
    assert (dots >= -1e-8 * g.norm(dim=1) * d.norm()).all()
    assert d.norm() > 0


def test_dualproj_keeps_the_mean_when_nothing_conflicts() -> None:
    g = torch.rand(4, 10, dtype=torch.float64) + 0.1  # all positive: no conflict
    torch.testing.assert_close(balancing.get("dualproj").aggregate(g), g.mean(0))
    torch.testing.assert_close(balancing.get("upgrad").aggregate(g), g.mean(0))


@pytest.mark.parametrize("t", [1, 3, 6])
def test_mean_and_sum_are_the_rows_mean_and_sum(t: int) -> None:
    g = conflicting(t, p=20, seed=t)
    torch.testing.assert_close(balancing.get("mean").aggregate(g), g.mean(0))
    torch.testing.assert_close(balancing.get("sum").aggregate(g), g.sum(0))


def test_pcgrad_two_conflicting_gradients_sum_of_projections() -> None:
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    d = balancing.get("pcgrad", seed=0).aggregate(torch.stack([g1, g2]))
    torch.testing.assert_close(d, p1 + p2)
    assert abs(float(p1 @ g2)) < 1e-12 and abs(float(p2 @ g1)) < 1e-12


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t", [2, 3, 6])
def test_imtl_g_equal_projections_on_unit_gradients(seed: int, t: int) -> None:
    g = conflicting(t, seed=seed)
    m = balancing.get("imtl_g")
    d = m.aggregate(g)
    proj = (g / g.norm(dim=1, keepdim=True)) @ d
    torch.testing.assert_close(proj, proj.mean().expand(t), rtol=1e-7, atol=1e-8)
    assert abs(sum(m.last_weights.values()) - 1) < 1e-9


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t", [2, 3, 6])
def test_nash_mtl_weights_solve_bargaining_equation(seed: int, t: int) -> None:
    g = conflicting(t, seed=seed)
    m = balancing.get("nash_mtl")
    d = m.aggregate(g)
    alpha = torch.tensor([m.last_weights[i] for i in range(t)], dtype=torch.float64)
    assert (alpha > 0).all()
    torch.testing.assert_close((g @ g.T) @ alpha, 1 / alpha, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(d, alpha @ g)


@pytest.mark.parametrize("seed", range(3))
def test_cagrad_c0_is_mean(seed: int) -> None:
    g = conflicting(4, seed=seed)
    torch.testing.assert_close(balancing.get("cagrad", c=0.0).aggregate(g), g.mean(0))


@pytest.mark.parametrize("seed", range(5))
def test_cagrad_solves_its_dual_and_stays_in_the_ball(seed: int) -> None:
    g = conflicting(5, seed=seed)
    c = 0.5
    d = balancing.get("cagrad", c=c).aggregate(g)
    g0 = g.mean(0)
    # the update lies on the sphere of radius c‖g0‖ around g0 (before rescaling)
    torch.testing.assert_close((d - g0).norm(), c * g0.norm(), rtol=1e-6, atol=1e-9)
    # and improves the worst task at least as much as the mean gradient does
    assert float((g @ d).min()) >= float((g @ g0).min()) - 1e-8
    # optimality: no random point of the ball improves the worst task more (to tolerance)
    rng = np.random.default_rng(seed)
    best = float((g @ d).min())
    for _ in range(500):
        u = torch.as_tensor(rng.normal(size=g.shape[1]))
        cand = g0 + c * g0.norm() * u / u.norm()
        assert float((g @ cand).min()) <= best + 1e-4 * float(g.norm())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t", [2, 3, 6])
def test_config_equal_cosine_with_every_gradient(seed: int, t: int) -> None:
    g = conflicting(t, seed=seed)
    d = balancing.get("config").aggregate(g)
    cos = (g @ d) / (g.norm(dim=1) * d.norm())
    torch.testing.assert_close(cos, cos.mean().expand(t), rtol=1e-7, atol=1e-8)
    assert (cos > 0).all()
    # scaled by the sum of the projections onto its direction
    unit = d / d.norm()
    torch.testing.assert_close(d.norm(), (g @ unit).sum())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t", [2, 3, 6])
def test_aligned_mtl_aligned_gramian_has_condition_number_one(seed: int, t: int) -> None:
    from polytask.balancing.aggregation.aligned_mtl import alignment_matrix

    g = conflicting(t, seed=seed)
    b = torch.as_tensor(alignment_matrix((g @ g.T).numpy()))
    aligned = b @ g
    eig = torch.linalg.eigvalsh(aligned @ aligned.T)
    assert float(eig.max() / eig.min()) == pytest.approx(1.0, abs=1e-6)
    d = balancing.get("aligned_mtl").aggregate(g)
    torch.testing.assert_close(d, aligned.sum(0))


def test_gradvac_moves_pair_cosine_to_target() -> None:
    g = torch.tensor([[1.0, 0.2], [-0.3, 1.0]], dtype=torch.float64)
    target = 0.6
    m = balancing.get("gradvac", beta=0.5, seed=0)
    m.targets = {(0, 1): target, (1, 0): target}
    gram = (g @ g.T).numpy()
    phi = gram[0, 1] / np.sqrt(gram[0, 0] * gram[1, 1])
    assert phi < target
    coef = m.coefficients(gram, [0, 1])
    # with two tasks: g_0' = g_0 + k g_1 and g_1' = g_1 + k' g_0; the sum has coefficients
    # (1 + k', 1 + k). Each adjusted gradient reaches the target cosine with the other.
    g0_new = g[0] + (coef[1] - 1) * g[1]
    g1_new = g[1] + (coef[0] - 1) * g[0]
    for new, other in ((g0_new, g[1]), (g1_new, g[0])):
        cos = float(new @ other / (new.norm() * other.norm()))
        assert cos == pytest.approx(target, abs=1e-9)
    # the EMA of each pair moved towards the observed cosine
    assert m.targets[(0, 1)] == pytest.approx(0.5 * target + 0.5 * phi)
    assert m.targets[(1, 0)] == pytest.approx(0.5 * target + 0.5 * phi)


def test_gradvac_leaves_pairs_above_target_alone() -> None:
    g = torch.tensor([[1.0, 0.1], [0.9, 0.3]], dtype=torch.float64)
    d = balancing.get("gradvac", seed=0).aggregate(g)  # targets start at 0, cos > 0
    torch.testing.assert_close(d, g.sum(0))


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_one_task_gives_positive_multiple(name: str) -> None:
    g = torch.randn(1, 30, dtype=torch.float64)
    d = balancing.get(name, **({"seed": 0} if name in STOCHASTIC else {}))
    out = d.aggregate(g)
    if name == "graddrop":  # a single gradient is never dropped
        torch.testing.assert_close(out, g[0])
        return
    k = float(out @ g[0] / (g[0] @ g[0]))
    assert k > 0
    torch.testing.assert_close(out, k * g[0])


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_methods_reproducible_with_seed(name: str) -> None:
    g = conflicting(5, p=60, seed=3)
    a = [balancing.get(name, seed=7).aggregate(g) for _ in range(2)]
    torch.testing.assert_close(a[0], a[1])


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_shape_dtype_and_task_subset(name: str) -> None:
    g = conflicting(4, p=25, seed=1).float()
    m = balancing.get(name)
    out = m.aggregate(g[[0, 2]], tasks=[0, 2])
    assert out.shape == (25,) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_unknown_method_and_option_are_errors() -> None:
    from polytask.errors import PolytaskError

    with pytest.raises(PolytaskError, match="did you mean 'pcgrad'"):
        balancing.get("pcgard")
    with pytest.raises(PolytaskError, match="unknown key 'cc'"):
        balancing.get("cagrad", cc=0.1)


def test_graddrop_keeps_one_sign_per_coordinate_by_purity() -> None:
    g = conflicting(5, p=2000, seed=4)
    d = balancing.get("graddrop", seed=3).aggregate(g)
    # the same draw, by the definition: P = ½(1 + Σg/Σ|g|), keep g > 0 where P > U, g < 0
    # where P < U
    ref = balancing.get("graddrop", seed=3)
    purity = 0.5 * (1 + g.sum(0) / (g.abs().sum(0) + 1e-12))
    u = torch.rand(purity.shape, generator=ref._gen).double()
    keep = ((purity > u) & (g > 0)) | ((purity < u) & (g < 0))
    torch.testing.assert_close(d, (g * keep).sum(0))
    # every coordinate of the result has the sign of the gradients kept there
    kept_sign = torch.where(purity > u, 1.0, -1.0).double()
    assert ((d * kept_sign) >= 0).all()
