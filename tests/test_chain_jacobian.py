"""The hand-written batched backward through MLP trunks (parameter-level balancing) gives
each task's own gradient, exactly as autograd does, for every layer kind it covers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import polytask.balancing as balancing
from polytask.architectures import ArchitectureSpec
from polytask.architectures.hard import HardSharing
from polytask.balancing.chain_jacobian import MIN_TASKS, ChainJacobian, supported
from polytask.balancing.jacobian import MatrixJacobian, TaskJacobian
from polytask.encoders import TabularEncoder
from polytask.features.batches import Batch
from polytask.tasks import make_task
from polytask.training.steps import GradientStep


class Spy(balancing.GradientBalancer):
    """Records the (T, P) matrix the step hands over; the direction is the sum."""

    name = "spy"
    needs_matrix = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def direction(self, jac: TaskJacobian, tasks: list[int], losses: object) -> torch.Tensor:
        matrix = jac.matrix()
        self.seen.append(matrix.clone())
        return matrix.sum(0)


def _tasks(t: int) -> list:
    tasks = []
    for i in range(t):
        kind = "regression" if i % 2 == 0 else "binary"
        task = make_task(
            f"y{i}",
            kind,
            [f"y{i}"],
            {"standardize": False, "transform": "none"} if kind == "regression" else {},
        )
        task.fitted = True
        tasks.append(task)
    return tasks


def _batch(tasks: list, n: int, cardinalities: list[int], missing: int | None = None) -> Batch:
    g = torch.Generator().manual_seed(1)
    cat = (
        torch.stack([torch.randint(0, c, (n,), generator=g) for c in cardinalities], 1)
        if (cardinalities)
        else torch.zeros(n, 0, dtype=torch.long)
    )
    targets = [
        torch.randn(n, generator=g)
        if t.kind == "regression"
        else torch.randint(0, 2, (n,), generator=g).float()
        for t in tasks
    ]
    masks: list[torch.Tensor | None] = [None] * len(tasks)
    if missing is not None:  # task `missing` labelled on a third of the rows only
        masks[missing] = torch.arange(n) % 3 == 0
    return Batch(torch.randn(n, 7, generator=g), cat, targets, masks)


def _reference(net: HardSharing, tasks: list, batch: Batch, seed: int) -> torch.Tensor:
    """Each task's gradient of the shared parameters, one autograd.grad each, on the
    forward the step saw (same seed: same dropout mask)."""
    trunk = [p for p in net.shared_parameters() if p.requires_grad]
    rows = []
    for i, task in enumerate(tasks):
        torch.manual_seed(seed)
        out = net.forward_list(*batch.inputs)[i]
        loss = task.loss(out, batch.targets[i], batch.masks[i])
        grads = torch.autograd.grad(loss, trunk, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, trunk, strict=True)
                ]
            )
        )
    return torch.stack(rows)


def _step_matrix(
    net: HardSharing, tasks: list, batch: Batch, seed: int, memory_bound: int = 2**28
) -> tuple[int, torch.Tensor]:
    """The matrix one parameter-level step hands its balancer, and how many times the
    hand-written path ran (0: autograd's batched backward did it)."""
    spy = Spy()
    step = GradientStep(net, tasks, spy, "parameters", memory_bound=memory_bound)
    calls = []
    if step.chain is not None:
        blocks = step.chain.blocks
        step.chain.blocks = lambda *args: calls.append(1) or blocks(*args)
    torch.manual_seed(seed)
    step(batch)
    return len(calls), spy.seen[-1]


def _check(
    net: HardSharing,
    tasks: list,
    batch: Batch,
    seed: int = 0,
    memory_bound: int = 2**28,
    by_hand: int = 1,
) -> None:
    """The step's matrix equals autograd's rows; ``by_hand``: the written-out path ran."""
    ran, matrix = _step_matrix(net, tasks, batch, seed, memory_bound)
    assert ran == by_hand
    torch.testing.assert_close(matrix, _reference(net, tasks, batch, seed), rtol=1e-4, atol=1e-6)


def _same_update(
    net: HardSharing, batch: Batch, a: GradientStep, b: GradientStep, rtol: float
) -> None:
    """Steps ``a`` and ``b`` on the same batch leave the same .grad everywhere."""
    grads = []
    for step in (a, b):
        net.zero_grad(set_to_none=True)
        step(batch)
        grads.append([p.grad.clone() for p in net.parameters()])
    for x, y in zip(*grads, strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=rtol / 100)


@pytest.mark.parametrize("norm", ["none", "layer", "batch"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh", "elu"])
def test_rows_match_autograd_for_every_mlp_layer_kind(norm: str, activation: str) -> None:
    torch.manual_seed(0)
    tasks = _tasks(4)
    enc = TabularEncoder(7, [5, 3], [4, 2], [16, 12, 8], activation, 0.2, norm)
    net = HardSharing(ArchitectureSpec(enc, tasks, [], activation, 0.0))
    batch = _batch(tasks, 40, [5, 3], missing=1)
    _check(net, tasks, batch, seed=7)


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_tasks_in_chunks_under_a_small_memory_bound_give_the_same_rows(norm: str) -> None:
    torch.manual_seed(0)
    tasks = _tasks(5)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(7, [4], [3], [12, 8], "silu", 0.1, norm), tasks, [])
    )
    batch = _batch(tasks, 21, [4], missing=3)
    _check(net, tasks, batch, seed=3, memory_bound=1)  # one task a chunk


def test_rows_match_autograd_with_head_towers_and_numeric_input_only() -> None:
    torch.manual_seed(0)
    tasks = _tasks(4)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(7, [], [], [10, 6], "relu", 0.0, "none"), tasks, [5])
    )
    batch = _batch(tasks, 33, [])
    _check(net, tasks, batch)


def test_frozen_first_layer_and_leaky_relu() -> None:
    torch.manual_seed(0)
    tasks = _tasks(4)
    enc = TabularEncoder(7, [4], [3], [9, 5], "relu", 0.0, "none")
    enc.trunk[1] = nn.LeakyReLU(0.1)
    enc.trunk[0].weight.requires_grad_(False)  # frozen: no row, but δ still flows below it
    net = HardSharing(ArchitectureSpec(enc, tasks, []))
    batch = _batch(tasks, 20, [4])
    _check(net, tasks, batch)


def test_batch_norm_with_running_statistics_matches_autograd() -> None:
    torch.manual_seed(0)
    tasks = _tasks(4)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(7, [], [], [8, 6], "relu", 0.0, "batch"), tasks, [])
    )
    batch = _batch(tasks, 25, [])
    net(*batch.inputs)  # some running statistics
    net.eval()  # BatchNorm now uses them: a fixed affine map
    _check(net, tasks, batch)


@pytest.mark.parametrize("method", ["mean", "upgrad", "db_mtl", "graddrop"])
def test_update_equals_the_autograd_path(method: str) -> None:
    """Same step with and without the hand-written path: the same .grad everywhere."""
    torch.manual_seed(0)
    tasks = _tasks(4)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(7, [5], [3], [16, 8], "gelu", 0.0, "layer"), tasks, [])
    )
    batch = _batch(tasks, 30, [5], missing=2)
    opts = {"seed": 0} if method == "graddrop" else {}
    fast = GradientStep(net, tasks, balancing.get(method, **opts), "parameters")
    slow = GradientStep(net, tasks, balancing.get(method, **opts), "parameters")
    slow.chain = None  # autograd's batched backward
    _same_update(net, batch, fast, slow, rtol=1e-4)


def test_falls_back_to_autograd_when_the_chain_is_not_the_representation() -> None:
    class Scaled(HardSharing):
        def representation(self, *inputs: torch.Tensor) -> torch.Tensor:
            return super().representation(*inputs) * 2.0  # something after the trunk

    torch.manual_seed(0)
    tasks = _tasks(4)
    net = Scaled(
        ArchitectureSpec(TabularEncoder(7, [], [], [8, 6], "relu", 0.0, "none"), tasks, [])
    )
    batch = _batch(tasks, 12, [])
    _check(net, tasks, batch, by_hand=0)


def test_tape_records_only_when_armed_and_releases_activations() -> None:
    torch.manual_seed(0)
    tasks = _tasks(4)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(7, [], [], [8], "relu", 0.0, "none"), tasks, [])
    )
    batch = _batch(tasks, 10, [])
    step = GradientStep(net, tasks, balancing.get("mean"), "parameters")
    assert step.chain is not None
    net(*batch.inputs)  # inference, loss-level training: nothing recorded
    assert step.chain.tape.records == []
    step(batch)
    assert step.chain.tape.records == [] and not step.chain.tape.armed
    step.close()  # the trainer does this after training: no hook stays on the model
    assert all(not m._forward_hooks for m in net.modules())
    step(batch)  # still works, through autograd's batched backward


def test_few_tasks_use_autograds_batched_backward() -> None:
    """Below MIN_TASKS tasks the written-out path is not faster: it is not set up."""
    torch.manual_seed(0)
    tasks = _tasks(MIN_TASKS - 1)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(7, [], [], [8, 6], "relu", 0.0, "layer"), tasks, [])
    )
    assert GradientStep(net, tasks, balancing.get("mean"), "parameters").chain is None
    _check(net, tasks, _batch(tasks, 12, []), by_hand=0)


def test_supported_layers() -> None:
    assert all(
        supported(m)
        for m in [
            nn.Linear(2, 3),
            nn.ReLU(),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.LayerNorm(3),
            nn.BatchNorm1d(3),
        ]
    )
    assert not supported(nn.ReLU(inplace=True))
    assert not supported(nn.Conv1d(1, 1, 1))
    assert not supported(nn.LayerNorm([2, 3]))


def test_buffers_are_reused_from_step_to_step() -> None:
    torch.manual_seed(0)
    chain = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
    jac = ChainJacobian(chain, list(chain.parameters()))
    a = jac.buffer("x", (3, 4), torch.zeros(1))
    b = jac.buffer("x", (2, 4), torch.zeros(1))
    assert a.data_ptr() == b.data_ptr()
    assert jac.buffer("x", (2, 4), torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


class RankOne(MatrixJacobian):
    """Rows given by their rank-one factors only (the matrix is not for reading)."""

    def __init__(self, d: torch.Tensor, w: torch.Tensor) -> None:
        super().__init__(torch.empty(0))
        self.d, self.w = d, w

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.d, self.w

    def matrix(self) -> torch.Tensor:
        raise AssertionError("the rank-one form should not need the matrix")


@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop_outer_form_equals_the_matrix_form(leak: float) -> None:
    """Linear one-output heads at the representation: GradDrop from the rank-one factors
    gives the direction the (T, N·H) matrix gives, with the same random draws."""
    g = torch.Generator().manual_seed(0)
    d = torch.randn(5, 12, generator=g, dtype=torch.float64)
    d[:, ::4] = 0.0  # rows without labels
    w = torch.randn(5, 7, generator=g, dtype=torch.float64)
    matrix = (d[:, :, None] * w[:, None, :]).reshape(5, -1)
    a = balancing.get("graddrop", seed=3, leak=leak)
    b = balancing.get("graddrop", seed=3, leak=leak)
    factored = RankOne(d, w)
    a.update(factored, list(range(5)))
    torch.testing.assert_close(factored.result, b.aggregate(matrix))


def test_graddrop_at_representation_uses_the_outer_form_with_linear_heads() -> None:
    torch.manual_seed(0)
    tasks = _tasks(3)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(7, [], [], [8, 6], "relu", 0.0, "none"), tasks, [])
    )
    batch = _batch(tasks, 16, [], missing=0)
    fast = GradientStep(net, tasks, balancing.get("graddrop", seed=1), "representation")
    slow = GradientStep(net, tasks, balancing.get("graddrop", seed=1), "representation")
    slow.linear = None  # each head on its own alias, the whole matrix
    _same_update(net, batch, fast, slow, rtol=1e-5)


def test_db_mtl_moving_average_with_tasks_sitting_out() -> None:
    """The (T, P) moving average keeps each task's row across steps it sits out."""
    db = balancing.get("db_mtl", beta=0.5, sigma=0.0)
    g1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    db.aggregate(g1, [0, 1, 2], losses=[1.0, 1.0, 1.0])
    g2 = torch.tensor([[3.0, 0.0], [2.0, 2.0]], dtype=torch.float64)
    d = db.aggregate(g2, [0, 2], losses=[1.0, 2.0])  # task 1 sits out
    ema0 = 0.5 * torch.tensor([1.0, 0.0]) + 0.5 * torch.tensor([3.0, 0.0])
    ema2 = 0.5 * torch.tensor([1.0, 1.0]) + 0.5 * torch.tensor([1.0, 1.0])  # g / L = (1, 1)
    n0, n2 = ema0.norm(), ema2.norm()
    expected = ema0 * (max(n0, n2) / n0) + ema2 * (max(n0, n2) / n2)
    torch.testing.assert_close(d, expected.double())
    state = db.state_dict()
    assert set(state["ema"]) == {"0", "1", "2"}
    fresh = balancing.get("db_mtl", beta=0.5, sigma=0.0)
    fresh.load_state_dict(state)
    g3 = torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    ones = [1.0] * 3
    torch.testing.assert_close(
        fresh.aggregate(g3, [0, 1, 2], losses=ones), db.aggregate(g3, [0, 1, 2], losses=ones)
    )
