"""The loss-level methods of issue 13 against their papers' defining properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import polytask.balancing as balancing
from polytask.architectures import ArchitectureSpec
from polytask.architectures.hard import HardSharing
from polytask.encoders import TabularEncoder
from polytask.features.batches import TensorTable
from polytask.features.preprocess import FeatureTensors
from polytask.tasks import make_task
from polytask.training.probe import TrainingProbe


def _leaves(values: list[float]) -> list[torch.Tensor]:
    return [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]


def _bal(name: str, tasks: int = 3, **opts: object) -> balancing.LossBalancer:
    bal = balancing.get(name, **opts)
    assert isinstance(bal, balancing.LossBalancer)
    bal.setup([f"t{i}" for i in range(tasks)])
    return bal


def test_stch_tends_to_the_max_loss_as_mu_goes_to_zero() -> None:
    values, pref = [0.7, 2.5, 2.4], {"t0": 2.0}
    worst = max(2.0 * 0.7, 2.5, 2.4)  # max_i λ_i (L_i - z)
    gaps = []
    for mu in (1.0, 0.1, 1e-2, 1e-4):
        value = float(_bal("stch", mu=mu, weights=pref).combine(_leaves(values)).detach())
        assert worst <= value <= worst + mu * math.log(3) + 1e-12  # the paper's bounds
        gaps.append(value - worst)
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-8
    # its gradient weighs task i by softmax(λ(L - z)/μ)_i λ_i
    leaves = _leaves(values)
    stch = _bal("stch", mu=0.5, ideal=0.1, weights=pref)
    stch.combine(leaves).backward()
    lam = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    expected = torch.softmax(lam * (torch.tensor(values, dtype=torch.float64) - 0.1) / 0.5, 0)
    torch.testing.assert_close(torch.stack([x.grad for x in leaves]), expected * lam)
    assert stch.weights()["t0"] == pytest.approx(float(expected[0] * 2))


def test_gls_is_the_geometric_mean_and_weighs_by_inverse_loss() -> None:
    values = [0.5, 2.0, 8.0]
    leaves = _leaves(values)
    value = _bal("gls").combine(leaves)
    assert float(value.detach()) == pytest.approx(2.0)  # (0.5 · 2 · 8)^(1/3)
    value.backward()
    got = [float(x.grad) for x in leaves]
    np.testing.assert_allclose(got, [2.0 / (3 * v) for v in values])  # G / (T L_i)
    # invariant to rescaling one task's loss (up to a constant factor of the objective)
    scaled = float(_bal("gls").combine(_leaves([50.0, 2.0, 8.0])).detach())
    assert scaled / float(value.detach()) == pytest.approx(100 ** (1 / 3))
    # a task without labels (loss 0) sits the step out
    assert float(_bal("gls").combine(_leaves([0.0, 2.0, 8.0])).detach()) == pytest.approx(4.0)


def test_imtl_l_equalises_the_scaled_losses() -> None:
    losses = [0.01, 1.0, 300.0]  # units orders of magnitude apart
    bal = _bal("imtl_l", init=0.0)
    opt = torch.optim.Adam(bal.parameters(), lr=0.3, betas=(0.5, 0.9))
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, 0.98)
    for _ in range(250):
        opt.zero_grad()
        bal.combine([torch.tensor(v) for v in losses]).backward()
        opt.step()
        decay.step()
    scaled = torch.exp(bal.scales.detach()) * torch.tensor(losses)
    torch.testing.assert_close(scaled, torch.ones(3), rtol=1e-3, atol=1e-3)
    # at e^s L = 1 the objective's derivative in s is exactly 0; the model sees e^s ∇L
    start = _bal("imtl_l")  # init: loss puts s there from the first batch
    leaves = _leaves(losses)
    start.combine(leaves).backward()
    np.testing.assert_allclose(start.scales.grad.numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose([float(x.grad) for x in leaves], [1 / v for v in losses], rtol=1e-6)


def _table(n: int = 64, t: int = 3, seed: int = 0):
    """A small smooth (tanh) net in float64, so that finite differences see no ReLU kink
    and lose no digits, and a training table."""
    torch.manual_seed(seed)
    tasks = []
    for i in range(t):
        task = make_task(f"y{i}", "regression", [f"y{i}"], {"standardize": False})
        task.fitted = True
        tasks.append(task)
    enc = TabularEncoder(6, [4], [3], [16, 8], "tanh", 0.0, "none")
    net = HardSharing(ArchitectureSpec(enc, tasks, [5], "tanh", 0.0)).double()
    gen = torch.Generator().manual_seed(seed)
    num = torch.randn(n, 6, generator=gen, dtype=torch.float64)
    cat = torch.randint(0, 4, (n, 1), generator=gen)
    targets = [torch.randn(n, generator=gen, dtype=torch.float64) for _ in range(t)]
    masks = [torch.ones(n, dtype=torch.bool) for _ in range(t)]
    table = TensorTable(FeatureTensors(num, cat, {}), targets, masks)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    return table, TrainingProbe(net, tasks, table, opt)


def test_auto_lambda_hypergradient_is_the_papers_finite_difference() -> None:
    """-α ∇L_i^train(θ) · ∇L_val(θ') with θ' = θ - α ∇ Σ λ L^train: the finite
    difference along ∇L_val(θ') matches the exact product."""
    table, probe = _table()
    bal = _bal("auto_lambda", seed=5, batch_size=32, init=0.5)
    before = [p.detach().clone() for p in probe.params]
    gen = torch.Generator()
    gen.set_state(bal._gen.get_state())
    train = torch.randperm(len(table), generator=gen)[:32]
    held_out = torch.randperm(len(table), generator=gen)[:32]
    got = bal.hypergradient(probe)
    for p, b in zip(probe.params, before, strict=True):
        assert torch.equal(p, b)  # the parameters are left as they were
    params, alpha = probe.params, probe.lr
    per_task = [
        torch.autograd.grad(v, params, allow_unused=True, retain_graph=True)
        for v in probe.losses(train, True)
    ]
    per_task = [
        [torch.zeros_like(p) if g is None else g for g, p in zip(r, params, strict=True)]
        for r in per_task
    ]
    total = [sum(0.5 * r[j] for r in per_task) for j in range(len(params))]
    with torch.no_grad():
        for p, g in zip(params, total, strict=True):
            p.sub_(alpha * g)
    val = sum(probe.losses(held_out, True))
    v = torch.autograd.grad(val, params, allow_unused=True)
    v = [torch.zeros_like(p) if g is None else g for g, p in zip(v, params, strict=True)]
    with torch.no_grad():
        for p, b in zip(params, before, strict=True):
            p.copy_(b)
    exact = [
        -alpha * float(sum((a * b).sum() for a, b in zip(r, v, strict=True))) for r in per_task
    ]
    np.testing.assert_allclose(got, exact, rtol=2e-3, atol=1e-7)
    assert np.abs(exact).min() > 1e-5  # a real signal, not zeros


def test_auto_lambda_is_reproducible_with_seed_and_learns_its_weights() -> None:
    runs = []
    for _ in range(2):
        _, probe = _table(seed=1)
        bal = _bal("auto_lambda", seed=3, batch_size=16, lr=0.05)
        for _ in range(3):
            bal.combine([torch.tensor(1.0)] * 3)
            bal.after_update(probe.at(lambda: []))
        runs.append(bal.lam.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], 1.0)  # λ moved
    assert (runs[0] >= 0).all()
