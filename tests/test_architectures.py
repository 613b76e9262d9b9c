"""The sharing architectures (mmoe, cgc, ple, cross_stitch): they train, save and load,
validate their options, keep the representation / head split truthful for the Jacobian
engine, and reduce to simpler architectures where the maths says they should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import polytask
import polytask.balancing as balancing
from polytask import PolytaskError
from polytask.architectures import ARCHITECTURES, ArchitectureSpec, MultiTaskNet
from polytask.architectures.cgc import CGC
from polytask.architectures.cross_stitch import CrossStitch
from polytask.architectures.mmoe import MMoE
from polytask.architectures.ple import PLE
from polytask.balancing.jacobian import TaskJacobian
from polytask.datasets.synthetic import MMOE_TASKS, mmoe_synthetic
from polytask.encoders import TabularEncoder
from polytask.features.batches import Batch
from polytask.tasks import Task, make_task
from polytask.training.steps import GradientStep, LossStep
from tests.conftest import make_synthetic

NEW = ["mmoe", "cgc", "ple", "cross_stitch"]
#: small options per architecture for the fast tests
SMALL: dict[str, dict] = {
    "mmoe": {"experts": 4, "expert_hidden": [16]},
    "cgc": {"shared_experts": 2, "task_experts": 1, "expert_hidden": [16]},
    "ple": {"levels": 2, "shared_experts": 2, "task_experts": 1, "expert_hidden": [16]},
    "cross_stitch": {"init": 0.9},
}
TASKS = ["y1:regression", "y2:binary"]


# -- building nets directly ---------------------------------------------------------------


def _tasks() -> list[Task]:
    """Two regression tasks and a 3-class task (outputs of width 1, 1 and 3)."""
    tasks = []
    for name in ("r1", "r2"):
        t = make_task(name, "regression", [name], {"standardize": False, "transform": "none"})
        t.fitted = True
        tasks.append(t)
    cls = make_task("c", "multiclass", ["c"], {})
    cls.fit(pd.Series(["a", "b", "c", "a"], name="c"))
    tasks.append(cls)
    return tasks


def _net(
    arch: str,
    tasks: list[Task],
    options: dict | None = None,
    hidden: list[int] | None = None,
    head_hidden: list[int] | None = None,
    norm: str = "layer",
    seed: int = 0,
) -> MultiTaskNet:
    """A net as build_net wires it: 6 numeric features and one categorical column."""
    torch.manual_seed(seed)
    cls = ARCHITECTURES[arch]
    hidden = [12, 8] if hidden is None else hidden
    own = cls.builds_shared_layers
    enc = TabularEncoder(6, [4], [3], [] if own else hidden, "relu", 0.0, norm)
    opts = cls.Options(**(SMALL.get(arch, {}) if options is None else options))
    extra = {"hidden": hidden, "norm": norm} if own else {}
    head = [5] if head_hidden is None else head_hidden
    return cls(ArchitectureSpec(enc, tasks, head, "relu", 0.0, options=opts, **extra))


def _batch(tasks: list[Task], n: int = 24, seed: int = 1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    targets = [
        torch.randint(0, 3, (n,), generator=g)
        if t.kind == "multiclass"
        else torch.randn(n, generator=g)
        for t in tasks
    ]
    return Batch(
        torch.randn(n, 6, generator=g),
        torch.randint(0, 4, (n, 1), generator=g),
        targets,
        [None] * len(tasks),
    )


def _losses(net: MultiTaskNet, tasks: list[Task], batch: Batch) -> list[torch.Tensor]:
    outs = net.forward_list(batch.numeric, batch.categorical)
    return [
        t.loss(o, y, m) for t, o, y, m in zip(tasks, outs, batch.targets, batch.masks, strict=True)
    ]


class Spy(balancing.GradientBalancer):
    """Keeps the (T, P) matrix the step hands it and returns the plain sum."""

    name = "spy"
    needs_matrix = True
    seen: torch.Tensor | None = None

    def direction(self, jac: TaskJacobian, tasks: list[int], losses: object) -> torch.Tensor:
        matrix = jac.matrix()
        self.seen = matrix.clone()
        return matrix.sum(0)


def _flat(grads: tuple[torch.Tensor | None, ...], params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


# -- the representation / head split -------------------------------------------------------


@pytest.mark.parametrize("arch", NEW)
def test_heads_forward_equals_each_head_module_on_the_representation(arch: str) -> None:
    tasks = _tasks()
    net = _net(arch, tasks)
    batch = _batch(tasks)
    rep = net.representation(batch.numeric, batch.categorical)
    assert rep.ndim == 2 and rep.shape[0] == 24
    outs = net.heads_forward(rep)
    heads = net.head_modules()
    assert len(heads) == len(outs) == 3
    for out, head, task in zip(outs, heads, tasks, strict=True):
        torch.testing.assert_close(out, head(rep), rtol=0, atol=0)
        assert out.shape == (24, task.output_size)
    by_name = net(batch.numeric, batch.categorical)
    assert list(by_name) == ["r1", "r2", "c"]


@pytest.mark.parametrize("norm", ["layer", "batch"])
@pytest.mark.parametrize("arch", NEW)
def test_heads_are_private_and_every_parameter_learns(arch: str, norm: str) -> None:
    """Task s's loss never reaches task t's head; the summed loss reaches every parameter."""
    tasks = _tasks()
    net = _net(arch, tasks, norm=norm)
    batch = _batch(tasks)
    losses = _losses(net, tasks, batch)
    heads = net.head_modules()
    head_ids = [{id(p) for p in h.parameters()} for h in heads]
    for a in range(len(heads)):
        for b in range(a + 1, len(heads)):
            assert not head_ids[a] & head_ids[b]
    for s, loss in enumerate(losses):
        for t, head in enumerate(heads):
            params = list(head.parameters())
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            reached = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
            assert reached == (s == t), (arch, s, t)
    sum(losses).backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead
    shared = {id(p) for p in net.shared_parameters()}
    n_head = sum(p.numel() for h in heads for p in h.parameters())
    n_shared = sum(p.numel() for p in net.parameters() if id(p) in shared)
    assert n_head + n_shared == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
@pytest.mark.parametrize("arch", NEW)
def test_engine_parameter_level_rows_equal_plain_autograd(arch: str, norm: str) -> None:
    tasks = _tasks()
    net = _net(arch, tasks, norm=norm)
    batch = _batch(tasks)
    trunk = net.shared_parameters()
    ref = []
    for t in range(len(tasks)):
        loss = _losses(net, tasks, batch)[t]
        ref.append(_flat(torch.autograd.grad(loss, trunk, allow_unused=True), trunk))
    spy = Spy()
    GradientStep(net, tasks, spy, "parameters")(batch)
    assert spy.seen is not None and spy.seen.shape == (3, sum(p.numel() for p in trunk))
    torch.testing.assert_close(spy.seen, torch.stack(ref), rtol=1e-5, atol=1e-6)
    # each head's .grad is its own task's gradient only
    for t, head in enumerate(net.head_modules()):
        params = list(head.parameters())
        own = torch.autograd.grad(_losses(net, tasks, batch)[t], params)
        torch.testing.assert_close(_flat(tuple(p.grad for p in params), params), _flat(own, params))


@pytest.mark.parametrize("arch", NEW)
def test_engine_representation_level_rows_equal_plain_autograd(arch: str) -> None:
    tasks = _tasks()
    net = _net(arch, tasks)
    batch = _batch(tasks)
    rep = net.representation(batch.numeric, batch.categorical)
    outs = net.heads_forward(rep)
    ref = [
        torch.autograd.grad(t.loss(o, y, None), rep, retain_graph=True)[0].reshape(-1)
        for t, o, y in zip(tasks, outs, batch.targets, strict=True)
    ]
    spy = Spy()
    GradientStep(net, tasks, spy, "representation")(batch)
    torch.testing.assert_close(spy.seen, torch.stack(ref), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("level", ["parameters", "representation"])
@pytest.mark.parametrize("arch", NEW)
def test_sum_through_the_engine_equals_backward_of_the_summed_loss(arch: str, level: str) -> None:
    tasks = _tasks()
    net = _net(arch, tasks)
    batch = _batch(tasks)
    ew = balancing.get("ew")
    ew.setup([t.name for t in tasks])
    LossStep(net, tasks, ew)(batch)
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    GradientStep(net, tasks, balancing.get("sum"), level)(batch)
    for e, p in zip(expected, net.parameters(), strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-6)


# -- reductions: the maths says these are the same network --------------------------------


def _copy_expert_to_trunk(expert_layers: torch.nn.Module, trunk: torch.nn.Sequential) -> None:
    """Member 0 of a ParallelMLP (layer norm) into an mlp() trunk (Linear, LayerNorm, ReLU)."""
    linears = [m for m in trunk if isinstance(m, torch.nn.Linear)]
    norms = [m for m in trunk if isinstance(m, torch.nn.LayerNorm)]
    with torch.no_grad():
        for layer, lin, ln in zip(expert_layers, linears, norms, strict=True):
            w = layer.out_features
            lin.weight.copy_(layer.weight[0].T)
            lin.bias.copy_(layer.bias[:w])
            ln.weight.copy_(layer.norm_weight[:w])
            ln.bias.copy_(layer.norm_bias[:w])


def test_mmoe_with_one_expert_is_hard_sharing() -> None:
    """One expert: every gate weighs it 1 (no gate parameters), so MMoE is a shared-bottom
    network whose trunk is the expert (given the trunk's widths, model.hidden)."""
    tasks = _tasks()
    mmoe = _net("mmoe", tasks, {"experts": 1, "expert_hidden": [12, 8]})
    assert all(h.gate is None for h in mmoe.head_modules())
    hard = _net("hard", tasks, seed=1)
    hard.encoder.embeddings.load_state_dict(mmoe.encoder.embeddings.state_dict())
    _copy_expert_to_trunk(mmoe.experts, hard.encoder.trunk)
    for name in hard.heads:
        hard.heads[name].load_state_dict(mmoe.heads[name].tower.state_dict())
    batch = _batch(tasks)
    for a, b in zip(
        mmoe.forward_list(batch.numeric, batch.categorical),
        hard.forward_list(batch.numeric, batch.categorical),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    n_mmoe = sum(p.numel() for p in mmoe.parameters())
    assert n_mmoe == sum(p.numel() for p in hard.parameters())


def test_cgc_without_task_experts_is_mmoe_and_ple_with_one_level_is_cgc() -> None:
    tasks = _tasks()
    cgc = _net("cgc", tasks, {"shared_experts": 3, "task_experts": 0, "expert_hidden": [16]})
    mmoe = _net("mmoe", tasks, {"experts": 3, "expert_hidden": [16]}, seed=1)
    state = {k.replace("shared_experts.", "experts."): v for k, v in cgc.state_dict().items()}
    mmoe.load_state_dict(state)
    ple = _net("ple", tasks, {"levels": 1, **SMALL["cgc"]}, seed=2)
    cgc2 = _net("cgc", tasks, SMALL["cgc"], seed=3)
    ple.load_state_dict(cgc2.state_dict())
    batch = _batch(tasks)
    x = (batch.numeric, batch.categorical)
    for a, b in zip(cgc.forward_list(*x), mmoe.forward_list(*x), strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(ple.forward_list(*x), cgc2.forward_list(*x), strict=True):
        torch.testing.assert_close(a, b)


def test_cross_stitch_with_self_weight_one_keeps_the_columns_apart() -> None:
    """init=1: each unit is the identity, so task t's loss reaches only column t."""
    tasks = _tasks()
    net = _net("cross_stitch", tasks, {"init": 1.0}, hidden=[8, 8])
    batch = _batch(tasks)
    losses = _losses(net, tasks, batch)
    first = net.columns[0]
    for t, loss in enumerate(losses):
        (g,) = torch.autograd.grad(loss, [first.weight], retain_graph=True)
        per_column = g.abs().sum(dim=(1, 2))
        assert per_column[t] > 0
        assert torch.count_nonzero(per_column) == 1
    # default init 0.9: the units mix, every task reaches every column
    net = _net("cross_stitch", tasks, hidden=[8, 8])
    (g,) = torch.autograd.grad(_losses(net, tasks, batch)[0], [net.columns[0].weight])
    assert bool((g.abs().sum(dim=(1, 2)) > 0).all())
    torch.testing.assert_close(
        net.stitches[0].view(3, 3), torch.full((3, 3), 0.05).fill_diagonal_(0.9)
    )


def test_parameter_counts_follow_the_definitions() -> None:
    tasks = _tasks()  # outputs 1, 1, 3
    d, h, k = 6 + 3, 16, 5  # input embedding width, expert width, tower hidden
    emb = 4 * 3
    towers = sum(h * k + k + k * o + o for o in (1, 1, 3))
    layer = d * h + h + 2 * h  # linear + layer norm
    mmoe = _net("mmoe", tasks, {"experts": 4, "expert_hidden": [h]})
    gates = 3 * (d * 4 + 4)
    assert sum(p.numel() for p in mmoe.parameters()) == emb + 4 * layer + gates + towers
    cgc = _net("cgc", tasks, {"shared_experts": 2, "task_experts": 1, "expert_hidden": [h]})
    gates = 3 * (d * 3 + 3)
    assert sum(p.numel() for p in cgc.parameters()) == emb + (2 + 3) * layer + gates + towers
    cs = _net("cross_stitch", tasks, hidden=[h, h])
    columns = 3 * (layer + h * h + h + 2 * h)
    stitch = 3 * 3 + 3 * 3  # one (T, T) unit below the last, and the last unit's rows
    assert sum(p.numel() for p in cs.parameters()) == emb + columns + stitch + towers


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "options", "needle"),
    [
        ("mmoe", {"expertz": 4}, "expertz"),
        ("cgc", {"levels": 2}, "levels"),
        ("ple", {"levels": 0}, "levels"),
        ("cross_stitch", {"init": 1.5}, "init"),
        ("mmoe", {"experts": 0}, "experts"),
    ],
)
def test_bad_options_are_user_errors_naming_the_option(
    arch: str, options: dict, needle: str
) -> None:
    df = make_synthetic(40, seed=0)
    with pytest.raises(PolytaskError, match=needle) as err:
        polytask.fit(df, TASKS, architecture=arch, options=options, epochs=1, hidden=[8])
    assert arch in str(err.value)


def test_architecture_without_widths_is_a_user_error() -> None:
    df = make_synthetic(40, seed=0)
    with pytest.raises(PolytaskError, match="expert_hidden"):
        polytask.fit(df, TASKS, architecture="mmoe", epochs=1, hidden=[])
    with pytest.raises(PolytaskError, match=r"model\.hidden"):
        polytask.fit(df, TASKS, architecture="cross_stitch", epochs=1, hidden=[])


def test_options_are_declared_with_their_defaults() -> None:
    assert MMoE.Options().model_dump() == {
        "gate_init": "uniform",
        "experts": 8,
        "expert_hidden": None,
    }
    assert CGC.Options().model_dump() == {
        "gate_init": "uniform",
        "shared_experts": 2,
        "task_experts": 1,
        "expert_hidden": None,
    }
    assert PLE.Options().levels == 2
    assert CrossStitch.Options().init == 0.9


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_synthetic(800, seed=0), make_synthetic(400, seed=1)


@pytest.mark.parametrize("arch", NEW)
def test_trains_beats_the_trivial_baseline_and_round_trips(
    arch: str, table: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    train, test = table
    model = polytask.fit(
        train,
        TASKS,
        architecture=arch,
        options=SMALL[arch],
        epochs=40,
        hidden=[32],
        batch_size=64,
        out=tmp_path / "run",
    )
    scores = model.evaluate(test)
    # trivial baseline: the training mean (R² <= 0) and a constant probability (AUROC 0.5)
    baseline = 1 - ((test["y1"] - train["y1"].mean()) ** 2).mean() / test["y1"].var(ddof=0)
    assert baseline < 0.01
    assert scores["y1"]["r2"] > 0.7, scores
    assert scores["y2"]["auroc"] > 0.95, scores
    loaded = polytask.load(tmp_path / "run")
    assert type(loaded.net) is type(model.net)
    pd.testing.assert_frame_equal(loaded.predict(test), model.predict(test))


@pytest.mark.parametrize(
    "balancer",
    [
        "uw",
        {"method": "upgrad", "jacobian": "parameters"},
        {"method": "pcgrad", "jacobian": "parameters"},
        {"method": "mgda", "jacobian": "representation"},
    ],
    ids=["uw", "upgrad-parameters", "pcgrad-parameters", "mgda-representation"],
)
@pytest.mark.parametrize("arch", NEW)
def test_trains_with_loss_and_gradient_level_balancers(
    arch: str, balancer: str | dict, table: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = table
    model = polytask.fit(
        train,
        TASKS,
        architecture=arch,
        options=SMALL[arch],
        balancing=balancer,
        epochs=10,
        hidden=[16],
        batch_size=64,
        seed=1,
    )
    first, last = model.history[0]["train"]["loss"], model.history[-1]["train"]["loss"]
    assert all(np.isfinite(v) for v in last.values())
    assert last["y1"] < first["y1"] and last["y2"] < first["y2"], (first, last)
    assert model.evaluate(test)["y2"]["auroc"] > 0.85


def test_mmoe_learns_the_mmoe_synthetic_tasks() -> None:
    """Ma et al. 2018, Sec. 3: two regression tasks with weight cosine 0.5. MMoE learns
    the sinusoids, well beyond what a linear model of the features explains."""
    n, dim = 2000, 10
    full = mmoe_synthetic(n + 1000, 0.5, dim=dim, seed=0)
    train, test = full.iloc[:n], full.iloc[n:]
    model = polytask.fit(
        train,
        MMOE_TASKS,
        architecture="mmoe",
        options={"experts": 8, "expert_hidden": [16]},
        head_hidden=[8],
        dropout=0.0,
        epochs=60,
        batch_size=128,
    )
    scores = model.evaluate(test)
    cols = [f"x{i}" for i in range(dim)]
    x_train = np.c_[train[cols].to_numpy(), np.ones(n)]
    x_test = np.c_[test[cols].to_numpy(), np.ones(len(test))]
    for task in ("y1", "y2"):
        coef = np.linalg.lstsq(x_train, train[task].to_numpy(), rcond=None)[0]
        resid = test[task].to_numpy() - x_test @ coef
        linear_r2 = 1 - resid.var() / test[task].var(ddof=0)
        assert scores[task]["r2"] > 0.9, scores
        assert scores[task]["r2"] > linear_r2 + 0.1, (scores, linear_r2)


def test_the_registry_is_keyed_by_each_class_name_and_every_class_takes_one_spec() -> None:
    import inspect

    from polytask.architectures.base import MultiTaskNet as Base

    for name, cls in ARCHITECTURES.items():
        assert cls.name == name and issubclass(cls, Base)
        assert list(inspect.signature(cls.__init__).parameters) == ["self", "spec"], name
    spec = ArchitectureSpec(TabularEncoder(6, [], [], [8], "relu", 0.0, "none"), _tasks())
    with pytest.raises(AttributeError):
        spec.dropout = 0.5  # type: ignore[misc]  (frozen: one spec may build several nets)
