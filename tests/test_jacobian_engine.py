"""The Jacobian engine gives exact per-task gradients at both levels."""

from __future__ import annotations

import pytest
import torch

import polytask.balancing as balancing
from polytask.architectures import ArchitectureSpec
from polytask.architectures.hard import HardSharing
from polytask.balancing.jacobian import LinearHeadJacobian, RepresentationJacobian, TrunkJacobian
from polytask.encoders import TabularEncoder
from polytask.features.batches import Batch
from polytask.tasks import make_task
from polytask.training.balance_log import conflict_at_representation
from polytask.training.steps import GradientStep, LossStep


def _setup(seed: int = 0, t: int = 3, missing_task: int | None = None):
    torch.manual_seed(seed)
    tasks = []
    for i in range(t):
        task = make_task(
            f"y{i}", "regression", [f"y{i}"], {"standardize": False, "transform": "none"}
        )
        task.fitted = True
        tasks.append(task)
    enc = TabularEncoder(6, [4], [3], [16, 8], "relu", 0.0, "none")
    net = HardSharing(ArchitectureSpec(enc, tasks, [5], "relu", 0.0))
    n = 32
    num = torch.randn(n, 6)
    cat = torch.randint(0, 4, (n, 1))
    targets = [torch.randn(n) for _ in range(t)]
    masks = [None] * t
    if missing_task is not None:
        masks[missing_task] = torch.zeros(n, dtype=torch.bool)
    return net, tasks, Batch(num, cat, targets, masks)


def _grads(net):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_sum_method_equals_plain_backward_of_summed_loss(level: str) -> None:
    net, tasks, batch = _setup()
    ew = balancing.get("ew")
    ew.setup([t.name for t in tasks])
    LossStep(net, tasks, ew)(batch)
    expected = _grads(net)
    net.zero_grad(set_to_none=True)
    GradientStep(net, tasks, balancing.get("sum"), level)(batch)
    for e, g in zip(expected, _grads(net), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_parameter_level_rows_are_each_tasks_own_gradient() -> None:
    net, tasks, batch = _setup(t=4)
    trunk = net.shared_parameters()
    # reference: one autograd.grad per task on a fresh forward
    ref = []
    for i, t in enumerate(tasks):
        out = net.forward_list(batch.numeric, batch.categorical)[i]
        loss = t.loss(out, batch.targets[i], batch.masks[i])
        grads = torch.autograd.grad(loss, trunk)
        ref.append(torch.cat([g.reshape(-1) for g in grads]))
    ref = torch.stack(ref)
    seen = {}

    class Spy(balancing.GradientBalancer):
        name = "spy"
        needs_matrix = True  # the step hands it the whole (T, P) matrix

        def direction(self, jac, tasks, losses):
            matrix = jac.matrix()
            seen["m"] = matrix.clone()
            return matrix.sum(0)

    GradientStep(net, tasks, Spy(), "parameters")(batch)
    torch.testing.assert_close(seen["m"], ref, rtol=1e-5, atol=1e-6)
    # small memory bound: built in chunks, same result
    net.zero_grad(set_to_none=True)
    step = GradientStep(net, tasks, Spy(), "parameters", memory_bound=1)
    step(batch)
    torch.testing.assert_close(seen["m"], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_task_without_labels_sits_out(level: str) -> None:
    net, tasks, batch = _setup(t=3, missing_task=1)
    seen = {}
    m = balancing.get("mgda")
    orig = m.coefficients

    def spy(gram, tasks, losses):
        seen["rows"], seen["tasks"] = gram.shape[0], list(tasks)
        return orig(gram, tasks, losses)

    m.coefficients = spy
    losses = GradientStep(net, tasks, m, level)(batch)
    assert seen == {"rows": 2, "tasks": [0, 2]}
    assert float(losses[1].detach()) == 0.0
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_conflict_measurement_is_cosine_of_representation_gradients() -> None:
    net, tasks, batch = _setup(t=2)
    present, cos = conflict_at_representation(net, tasks, batch)
    assert present == [0, 1] and cos.shape == (2, 2)
    torch.testing.assert_close(cos.diagonal(), torch.ones(2))
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("method", ["mgda", "upgrad", "nash_mtl", "imtl_g"])
def test_linear_heads_closed_form_matches_explicit_gradients(method: str) -> None:
    torch.manual_seed(0)
    reg = make_task("r", "regression", ["r"], {"standardize": False, "transform": "none"})
    reg.fitted = True
    cls = make_task("c", "multiclass", ["c"], {})
    cls.fit(__import__("pandas").Series(["a", "b", "c", "a"], name="c"))
    tasks = [reg, cls]
    enc = TabularEncoder(6, [], [], [16, 8], "relu", 0.0, "none")
    net = HardSharing(ArchitectureSpec(enc, tasks, [], "relu", 0.0))
    assert net.linear_heads() is not None
    n = 40
    batch = Batch(
        torch.randn(n, 6),
        torch.zeros(n, 0, dtype=torch.long),
        [torch.randn(n), torch.randint(0, 3, (n,))],
        [None, None],
    )
    bal, handed = balancing.get(method), []
    update = bal.update
    bal.update = lambda jac, *args: handed.append(jac) or update(jac, *args)
    GradientStep(net, tasks, bal, "representation")(batch)
    # the closed form: the heads' Jacobian, its (T, N, H) rows never formed
    assert isinstance(handed[0], LinearHeadJacobian) and handed[0]._rows is None
    got = _grads(net)
    net.zero_grad(set_to_none=True)
    slow = GradientStep(net, tasks, balancing.get(method), "representation")
    slow.linear = None  # the generic path: each head on its own alias, explicit rows
    slow(batch)
    for g, e in zip(got, _grads(net), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


def test_fused_inference_heads_match_the_per_head_forward() -> None:
    torch.manual_seed(0)
    tasks = []
    for i in range(4):
        t = make_task(f"y{i}", "regression", [f"y{i}"], {})
        t.fitted = True
        tasks.append(t)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(5, [], [], [8], "relu", 0.0, "none"), tasks, [], "relu")
    )
    x = torch.randn(7, 5)
    cat = torch.zeros(7, 0, dtype=torch.long)
    per_head = net.forward_list(x, cat)  # grad enabled: one head at a time
    with torch.no_grad():
        fused = net.forward_list(x, cat)
    for a, b in zip(per_head, fused, strict=True):
        torch.testing.assert_close(a.detach(), b)


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_a_method_gets_what_it_declares_it_needs_at_each_level(level: str) -> None:
    """DB-MTL averages whole gradients at the parameters (it builds the direction from the
    matrix) but only their norms at the representation (coefficients from the Gramian)."""
    net, tasks, batch = _setup()
    db, handed, asked = balancing.get("db_mtl"), [], []
    update = db.update
    db.update = lambda jac, *args: handed.append(jac) or update(jac, *args)
    direction = db.direction
    db.direction = lambda jac, *args: asked.append(jac) or direction(jac, *args)
    GradientStep(net, tasks, db, level)(batch)
    assert len(handed) == 1 and bool(asked) == (level == "parameters")
    assert isinstance(handed[0], TrunkJacobian if level == "parameters" else RepresentationJacobian)


def test_losses_after_is_a_closure_over_the_batch_at_the_current_parameters() -> None:
    net, tasks, batch = _setup()
    ew = balancing.get("ew")
    ew.setup([t.name for t in tasks])
    step = LossStep(net, tasks, ew)
    step(batch)
    closure = step.losses_after(batch)  # computes nothing yet
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)
        outs = net.forward_list(*batch.inputs)
        expected = [
            t.loss(o, y, m)
            for t, o, y, m in zip(tasks, outs, batch.targets, batch.masks, strict=True)
        ]
    for got, want in zip(closure(), expected, strict=True):
        torch.testing.assert_close(got, want)
