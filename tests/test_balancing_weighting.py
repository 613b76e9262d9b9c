"""Loss-level methods and the loss-aware gradient methods (GradNorm, DB-MTL)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import polytask.balancing as balancing


def _losses(*values: float) -> list[torch.Tensor]:
    return [torch.tensor(v, requires_grad=True) for v in values]


def test_ew_is_plain_sum_and_weights_are_fixed() -> None:
    ew = balancing.get("ew")
    ew.setup(["a", "b"])
    assert float(ew.combine(_losses(1.5, 2.0)).detach()) == pytest.approx(3.5)
    w = balancing.get("weights", weights={"a": 2.0, "b": 0.5})
    w.setup(["a", "b"])
    assert float(w.combine(_losses(1.5, 2.0)).detach()) == pytest.approx(4.0)
    assert w.weights() == {"a": 2.0, "b": 0.5}


def test_weights_must_name_every_task() -> None:
    from polytask.errors import PolytaskError

    w = balancing.get("weights", weights={"a": 1.0})
    with pytest.raises(PolytaskError, match="no weight for task"):
        w.setup(["a", "b"])
    w = balancing.get("weights", weights={"a": 1.0, "c": 1.0})
    with pytest.raises(PolytaskError, match="no task named 'c'"):
        w.setup(["a", "b"])


def test_uw_objective_and_its_optimum() -> None:
    uw = balancing.get("uw", init=0.0)
    uw.setup(["a", "b"])
    losses = _losses(4.0, 0.25)
    obj = uw.combine(losses)
    assert float(obj.detach()) == pytest.approx(0.5 * 4.0 + 0.5 * 0.25)  # s = 0
    # the optimum of ½ e^{-s} L + ½ s is s = log L: gradient descent on s finds it
    opt = torch.optim.SGD(uw.parameters(), lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        uw.combine([torch.tensor(4.0), torch.tensor(0.25)]).backward()
        opt.step()
    np.testing.assert_allclose(uw.log_vars.detach().numpy(), np.log([4.0, 0.25]), atol=1e-3)


def test_uw_first_step_leaves_the_started_log_variances_exactly_still() -> None:
    """At s_t = log L_t the gradient of s_t is zero; rounding must not make it ±eps,
    which Adam's first step would turn into a move of about its learning rate (5.5: its
    log rounds so that the gradient is 3e-8 unless it is held at zero)."""
    uw = balancing.get("uw")
    uw.setup(["a", "b"])
    losses = [torch.tensor(5.5, requires_grad=True), torch.tensor(0.0)]
    uw.combine(losses).backward()
    assert uw.log_vars.grad is None or float(uw.log_vars.grad.abs().max()) == 0.0
    assert float(losses[0].grad) == pytest.approx(0.5 / 5.5)  # the task still learns
    uw.combine([torch.tensor(5.5), torch.tensor(2.0)]).backward()  # b starts now
    assert float(uw.log_vars.grad[1]) == 0.0
    uw.log_vars.grad = None
    uw.combine([torch.tensor(3.0), torch.tensor(2.0)]).backward()  # and then learns
    assert float(uw.log_vars.grad[0]) == pytest.approx(0.5 - 0.5 * 3.0 / 5.5, rel=1e-5)


def test_uw_default_starts_at_log_of_first_loss_and_waits_for_absent_tasks() -> None:
    uw = balancing.get("uw")
    uw.setup(["a", "b"])
    uw.combine([torch.tensor(8.0), torch.tensor(0.0)])  # b has no labels in this batch
    assert float(uw.log_vars[0].detach()) == pytest.approx(math.log(8.0))
    assert float(uw.log_vars[1].detach()) == 0.0
    uw.combine([torch.tensor(8.0), torch.tensor(2.0)])
    assert float(uw.log_vars[0].detach()) == pytest.approx(math.log(8.0))  # not re-initialised
    assert float(uw.log_vars[1].detach()) == pytest.approx(math.log(2.0))


def test_dwa_weights_follow_loss_ratios() -> None:
    dwa = balancing.get("dwa", temperature=2.0)
    dwa.setup(["a", "b"])
    assert dwa.weights() == {"a": 1.0, "b": 1.0}
    dwa.end_epoch({"a": 1.0, "b": 1.0})
    assert dwa.weights() == {"a": 1.0, "b": 1.0}  # needs two epochs
    dwa.end_epoch({"a": 0.5, "b": 1.0})  # a fell, b did not: b gets more weight
    r = np.array([0.5, 1.0]) / 2.0
    expected = 2 * np.exp(r) / np.exp(r).sum()
    np.testing.assert_allclose(list(dwa.weights().values()), expected)
    assert float(dwa.combine(_losses(1.0, 1.0)).detach()) == pytest.approx(expected.sum())


def test_rlw_reproducible_and_averages_one() -> None:
    a, b = balancing.get("rlw", seed=3), balancing.get("rlw", seed=3)
    a.setup(["x", "y", "z"])
    b.setup(["x", "y", "z"])
    draws = [a.draw() for _ in range(2000)]
    assert torch.equal(draws[0], b.draw())
    w = torch.stack(draws)
    assert (w > 0).all()
    torch.testing.assert_close(w.sum(1), torch.full((2000,), 3.0))
    assert float(w.mean()) == pytest.approx(1.0)


def test_famo_gradient_and_logit_update() -> None:
    famo = balancing.get("famo", lr=0.1, gamma=0.0)
    famo.setup(["a", "b"])
    losses = _losses(2.0, 0.5)
    obj = famo.combine(losses)
    obj.backward()
    # z = (½, ½), c = 1 / (½/2 + ½/0.5) = 0.8; dObj/dL_t = c z_t / L_t
    assert float(losses[0].grad) == pytest.approx(0.8 * 0.5 / 2.0)
    assert float(losses[1].grad) == pytest.approx(0.8 * 0.5 / 0.5)
    # a's loss fell by half, b's did not move: b's weight must grow
    famo.after_update(lambda: [torch.tensor(1.0), torch.tensor(0.5)])
    w = famo.weights()
    assert w["b"] > w["a"] and w["a"] + w["b"] == pytest.approx(1.0)


def test_gradnorm_moves_weights_towards_equal_training_rates() -> None:
    gn = balancing.get("gradnorm", alpha=1.5, lr=0.01)
    g = torch.tensor([[10.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    first = gn.aggregate(g, losses=[1.0, 1.0])
    torch.testing.assert_close(first, g.sum(0))  # weights start at one
    for _ in range(400):
        gn.aggregate(g, losses=[1.0, 1.0])
    w = gn.w
    assert w[0] + w[1] == pytest.approx(2.0)
    # equal rates: the weighted norms w_i ||g_i|| become equal
    assert w[0] * 10 == pytest.approx(w[1] * 1, rel=0.1)
    with pytest.raises(ValueError, match="needs the task losses"):
        gn.aggregate(g)


def test_db_mtl_scales_log_gradients_to_the_largest_norm() -> None:
    db = balancing.get("db_mtl", beta=0.0)  # no averaging: the current gradients
    g = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    d = db.aggregate(g, losses=[1.0, 0.5])
    # log-gradients: g_a / 1 = (3, 0), g_b / 0.5 = (0, 2); both scaled to norm 3
    torch.testing.assert_close(d, torch.tensor([3.0, 3.0], dtype=torch.float64))
    db2 = balancing.get("db_mtl", beta=0.9, sigma=0.0)
    db2.aggregate(g, losses=[1.0, 1.0])
    d2 = db2.aggregate(
        torch.zeros_like(g) + torch.tensor([[0.0, 3.0], [1.0, 0.0]], dtype=torch.float64),
        losses=[1.0, 1.0],
    )
    ema_a = 0.9 * torch.tensor([3.0, 0.0]) + 0.1 * torch.tensor([0.0, 3.0])
    ema_b = 0.9 * torch.tensor([0.0, 1.0]) + 0.1 * torch.tensor([1.0, 0.0])
    na, nb = ema_a.norm(), ema_b.norm()
    expected = ema_a * (max(na, nb) / na) + ema_b * (max(na, nb) / nb)
    torch.testing.assert_close(d2, expected.double())
