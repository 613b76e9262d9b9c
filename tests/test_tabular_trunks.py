"""The tabular trunks (``model.trunk``), every one collected from the registry: each learns
a feature interaction a linear model cannot, TabM's members share their weights and are
averaged at the representation, every trunk saves, loads, predicts, serves and exports
to ONNX, trains with the weighted sum and with Gramian methods at both Jacobian levels
(its Gramian equal to autograd's J Jᵀ, no parameter left to the fallback), and a trunk
that cannot apply, an unknown name or a bad option is refused in one line."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fastapi.testclient import TestClient

import polytask
import polytask.balancing as balancing
import polytask.balancing.gramian as gramian
from polytask import MultiTaskModel, PolytaskError
from polytask.architectures import ARCHITECTURES, ArchitectureSpec, MultiTaskNet
from polytask.balancing.base import GradientBalancer, LossBalancer
from polytask.balancing.gramian import GramianEngine, GramianFallbackWarning
from polytask.encoders import TabularEncoder
from polytask.encoders.trunks import TRUNKS
from polytask.encoders.trunks.tabm import MemberAffine, MemberMean
from polytask.features.batches import Batch
from polytask.serving.app import create_app
from polytask.serving.payload import json_records
from polytask.tasks import Task, make_task
from polytask.training.steps import GradientStep, LossStep
from tests.conftest import assert_user_error, call_cli, make_table

#: small options per trunk for the fast tests (a new trunk runs with its defaults)
SMALL: dict[str, dict[str, Any]] = {
    "resnet": {"n_blocks": 1},
    "ft_transformer": {
        "d_token": 16,
        "n_blocks": 2,  # one block learns the interactions below for some seeds only
        "heads": 2,
        "attention_dropout": 0.0,
        "ffn_dropout": 0.0,
    },
    "tabm": {"k": 4},
}
ALL = list(TRUNKS)
#: the trunks other than the default MLP (the ones check_trunk restricts)
OTHERS = [name for name in TRUNKS if name != "mlp"]
TASKS = ["y_reg:regression", "y_bin:binary", "y_cls:multiclass"]
LABELS = ["id", "y_reg", "y_bin", "y_cls"]


def small(name: str) -> dict[str, Any]:
    return dict(SMALL.get(name, {}))


# -- it learns what it should -------------------------------------------------------------------


def interactions(n: int, seed: int) -> pd.DataFrame:
    """a = x1·x2 and b = sign(x0)·x3 of four uniform features: no linear part at all."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 4))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    df["a"] = x[:, 1] * x[:, 2]
    df["b"] = np.sign(x[:, 0]) * x[:, 3]
    return df


def linear_r2(train: pd.DataFrame, valid: pd.DataFrame, target: str) -> float:
    """Validation R² of least squares on the four features (with an intercept)."""
    design = np.c_[train[[f"x{i}" for i in range(4)]].to_numpy(), np.ones(len(train))]
    coef = np.linalg.lstsq(design, train[target].to_numpy(), rcond=None)[0]
    pred = np.c_[valid[[f"x{i}" for i in range(4)]].to_numpy(), np.ones(len(valid))] @ coef
    y = valid[target].to_numpy()
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


#: validation R² every trunk reaches on both interaction targets (seed 0, 20 epochs;
#: measured: resnet 0.99 / 0.94, ft_transformer 0.99 / 0.97, tabm 0.87 / 0.87)
R2_FLOOR = 0.8


@pytest.mark.parametrize("trunk", OTHERS)
def test_it_learns_feature_interactions_a_linear_model_cannot(trunk: str) -> None:
    train, valid = interactions(1500, seed=0), interactions(500, seed=1)
    linear = {t: linear_r2(train, valid, t) for t in ("a", "b")}
    assert max(linear.values()) < 0.05  # the targets have no linear part
    model = polytask.fit(
        train,
        ["a:regression", "b:regression"],
        validation=valid,
        trunk=trunk,
        trunk_options=small(trunk),
        hidden=[32],
        dropout=0.0,
        epochs=20,
        batch_size=64,
        lr=3e-3,
        patience=None,
        seed=0,
    )
    r2 = {t: s["r2"] for t, s in model.evaluate(valid).items()}
    print(f"{trunk}: validation R² {r2}, linear {linear}")
    for t in ("a", "b"):
        assert r2[t] >= R2_FLOOR, (trunk, t, r2[t])
        assert r2[t] >= linear[t] + 0.7, (trunk, t, r2[t], linear[t])


# -- TabM: k members sharing their weights, averaged at the representation ----------------------


def _regression_tasks(names: tuple[str, ...] = ("r1", "r2")) -> list[Task]:
    tasks = []
    for name in names:
        t = make_task(name, "regression", [name], {"standardize": False, "transform": "none"})
        t.fitted = True
        tasks.append(t)
    return tasks


def _net(
    trunk: str, tasks: list[Task], norm: str = "layer", dropout: float = 0.0, **options: Any
) -> MultiTaskNet:
    """Hard sharing over a trunk: 3 numeric features and one categorical column (its
    embedding 2 wide), hidden [8, 6], linear heads."""
    torch.manual_seed(0)
    enc = TabularEncoder(
        3, [4], [2], [8, 6], "relu", dropout, norm, trunk=trunk, trunk_options=options
    )
    return ARCHITECTURES["hard"](ArchitectureSpec(enc, tasks, [], "relu", 0.0))


def _batch(tasks: list[Task], n: int = 16, seed: int = 1) -> Batch:
    """Targets that are functions of the inputs: x0·x1 + x2, x2 - x0 + [cat = 1], x1, x0 - x1."""
    g = torch.Generator().manual_seed(seed)
    num = torch.randn(n, 3, generator=g)
    cat = torch.randint(0, 4, (n, 1), generator=g)
    x0, x1, x2 = num.unbind(1)
    functions = [x0 * x1 + x2, x2 - x0 + (cat[:, 0] == 1).float(), x1, x0 - x1]
    return Batch(num, cat, functions[: len(tasks)], [None] * len(tasks), ())


def test_tabm_members_share_weights_and_predict_their_mean() -> None:
    k = 5
    tasks = _regression_tasks()
    net = _net("tabm", tasks, k=k).eval()
    trunk = net.encoder.trunk  # type: ignore[union-attr]
    assert isinstance(trunk[-1], MemberMean)
    # one weight matrix per layer for all members; each member its own r, s, b vectors
    linears = [m for m in trunk if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(8, 5), (6, 8)]  # 3 numeric + 2
    assert all(m.bias is None for m in linears)
    adapters = [m for m in trunk if isinstance(m, MemberAffine)]
    assert [tuple(m.weight.shape) for m in adapters] == [(k, 5), (k, 8), (k, 8), (k, 6)]
    shared = 8 * 5 + 6 * 8
    own = k * (5 + 8 + 8) + k * (8 + 6 + 6)  # r, s, b per layer
    norms = 2 * (8 + 6)  # model.norm layer, shared by the members
    assert sum(p.numel() for p in trunk.parameters()) == shared + own + norms
    # as documented: the first layer's r at random ±1 (the members differ), others at 1
    first = adapters[0].weight.detach()
    assert set(first.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(row) for row in first.tolist()}) > 1
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in adapters[1:])

    batch = _batch(tasks)
    with torch.no_grad():
        joined = torch.cat([batch.numeric, net.encoder.embeddings[0](batch.categorical[:, 0])], 1)  # type: ignore[union-attr,index]
        members = trunk[:-1](joined)  # (N, k, 6): every member's representation
        assert members.shape == (16, k, 6)
        spread = (members - members.mean(1, keepdim=True)).abs().max()
        assert spread > 1e-2  # k different members, not one model k times
        rep = net.representation(batch.numeric, batch.categorical)
        torch.testing.assert_close(rep, members.mean(1), rtol=0, atol=1e-6)
        # the prediction is the mean of the members' predictions (shared linear heads)
        outs = net.forward_list(batch.numeric, batch.categorical)
        for head, out in zip(net.head_modules(), outs, strict=True):
            per_member = head(members)  # (N, k, 1)
            torch.testing.assert_close(out, per_member.mean(1), rtol=1e-6, atol=1e-6)
            assert (per_member - per_member.mean(1, keepdim=True)).abs().max() > 1e-3


# -- save / load / predict / serve / ONNX ------------------------------------------------------


Trained = tuple[str, MultiTaskModel, Path, pd.DataFrame]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trained]:
    """Trunk -> its run (trained once, shared by the tests below)."""
    cache: dict[str, Trained] = {}

    def get(trunk: str) -> Trained:
        if trunk not in cache:
            cache[trunk] = _train(trunk, tmp_path_factory)
        return cache[trunk]

    return get


def _train(trunk: str, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The trunk on a mixed table (categories, flags, gaps), trained with MGDA at the
    parameter level (the Gramian engine) for 2 epochs, with no fallback warning."""
    run = tmp_path_factory.mktemp(f"trunk-{trunk}") / "run"
    df = make_table(300, seed=3)
    calls = []
    original = GramianEngine.gramian

    def counted(self: GramianEngine, *args: Any) -> Any:
        calls.append(1)
        return original(self, *args)

    with warnings.catch_warnings(record=True) as caught, pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("always", GramianFallbackWarning)
        patch.setattr(GramianEngine, "gramian", counted)
        saved = gramian._WARNED.copy()
        gramian._WARNED.clear()  # every uncovered layer type is named again
        try:
            model = polytask.fit(
                df,
                TASKS,
                drop=["id"],
                trunk=trunk,
                trunk_options=small(trunk),
                hidden=[16],
                epochs=2,
                balancing={"method": "mgda", "jacobian": "parameters"},
                seed=0,
                out=run,
            )
        finally:
            gramian._WARNED.update(saved)
    fallback = [str(w.message) for w in caught if issubclass(w.category, GramianFallbackWarning)]
    assert len(calls) >= 2  # the steps went through the Gramian engine (2 epochs)
    assert fallback == [], fallback  # every trunk layer has a Gramian rule
    rows = make_table(120, seed=9).drop(columns=LABELS)
    rows.loc[:9, "cat"] = "never-seen"
    rows.loc[10:19, ["x0", "flag"]] = None
    return trunk, model, run, rows


@pytest.mark.parametrize("trunk", ALL)
def test_saved_config_round_trips_the_trunk_and_its_options(
    trunk: str, fitted: Callable[[str], Trained], tmp_path: Path
) -> None:
    _, model, run, rows = fitted(trunk)
    on_disk = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert (on_disk["trunk"], on_disk["trunk_options"]) == (trunk, small(trunk))
    again = MultiTaskModel.load(run)
    assert again.config.model.trunk == trunk
    assert again.config.model.trunk_options == small(trunk)
    layers = [type(m).__name__ for m in again.net.encoder.trunk]  # type: ignore[union-attr]
    assert layers == [type(m).__name__ for m in model.net.encoder.trunk]  # type: ignore[union-attr]
    saved, live = again.net.state_dict(), model.net.state_dict()
    assert list(saved) == list(live)
    assert all(torch.equal(saved[k], live[k]) for k in live)
    pd.testing.assert_frame_equal(again.predict(rows), model.predict(rows), check_exact=True)
    for a, b in zip(again.predict_raw(rows), model.predict_raw(rows), strict=True):
        np.testing.assert_array_equal(a, b)
    # saved again from the loaded model: the same trunk, options and predictions
    second = again.save(tmp_path / "again")
    third = MultiTaskModel.load(second)
    assert (third.config.model.trunk, third.config.model.trunk_options) == (trunk, small(trunk))
    pd.testing.assert_frame_equal(third.predict(rows), model.predict(rows), check_exact=True)


@pytest.mark.parametrize("trunk", ALL)
def test_serve_answers_as_predict_does(trunk: str, fitted: Callable[[str], Trained]) -> None:
    _, model, _, rows = fitted(trunk)
    records = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in rows.to_dict(orient="records")
    ]
    with TestClient(create_app(model)) as client:
        response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == json_records(model.predict(rows))


@pytest.fixture(scope="module")
def torchlib_once() -> Iterator[None]:
    """The exporter rebuilds onnxscript's table of ATen functions on every export (2-3 s
    each, the same table every time); here it is built once for the three exports."""
    from torch.onnx._internal.exporter import _registration

    apis = getattr(_registration, "onnxscript_apis", None)
    with pytest.MonkeyPatch.context() as patch:
        if apis is not None and hasattr(apis, "get_torchlib_ops"):
            patch.setattr(apis, "get_torchlib_ops", functools.cache(apis.get_torchlib_ops))
        yield


@pytest.mark.parametrize("trunk", OTHERS)  # the mlp's export: tests/test_export.py
def test_onnx_export_matches_pytorch(
    trunk: str, fitted: Callable[[str], Trained], tmp_path: Path, torchlib_once: None
) -> None:
    import onnxruntime as ort

    from polytask.serving.onnx_export import export_onnx

    _, model, _, rows = fitted(trunk)
    result = export_onnx(model, tmp_path / "model.onnx")
    assert result.max_error <= 1e-5
    feats = model.preprocessor.transform(rows)
    session = ort.InferenceSession(str(result.graph), providers=["CPUExecutionProvider"])
    got = session.run(
        None, {"numeric": feats.numeric.numpy(), "categorical": feats.categorical.numpy()}
    )
    want = model.predict_raw(rows)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        assert float(np.max(np.abs(g - w) / np.maximum(1.0, np.abs(w)))) <= 1e-5


# -- balancing at both Jacobian levels ---------------------------------------------------------

#: (method, Jacobian level): the weighted sum, and Gramian methods at both levels
BALANCING = [
    ("ew", "parameters"),
    ("mgda", "parameters"),
    ("mgda", "representation"),
    ("pcgrad", "parameters"),
    ("pcgrad", "representation"),
]


@pytest.fixture(autouse=False)
def float64() -> Any:
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("trunk", ALL)
def test_gramian_engine_equals_autograd_and_covers_every_parameter(
    trunk: str, float64: None
) -> None:
    """In float64 and in training mode (dropout on), with layer and batch norm: the
    engine's K is J Jᵀ of autograd's per-task gradients, and every trunk parameter
    goes through a layer rule (none is left to batched autograd)."""
    for norm in ("layer", "batch"):
        tasks = _regression_tasks(("r1", "r2", "r3"))
        net = _net(trunk, tasks, norm=norm, dropout=0.2, **small(trunk)).double().train()
        with torch.no_grad():  # a generic point: no adapter or scale left at its start
            for p in net.parameters():
                p.add_(0.1 * torch.randn_like(p))
        batch = _batch(tasks)
        params = [p for p in net.shared_parameters() if p.requires_grad]
        engine = GramianEngine([net], params)
        torch.manual_seed(3)
        with engine.recording():
            rep = net.representation(batch.numeric.double(), batch.categorical)
        outs = net.heads_forward(rep)
        losses = [
            t.loss(o, y.double(), None) for t, o, y in zip(tasks, outs, batch.targets, strict=True)
        ]
        rep_grads = torch.stack([torch.autograd.grad(v, rep, retain_graph=True)[0] for v in losses])
        with warnings.catch_warnings():
            warnings.simplefilter("error", GramianFallbackWarning)
            gram, left, _ = engine.gramian(rep, rep_grads)
        assert left == [], [type(engine.owned[id(p)]).__name__ for p in left]
        rows = []
        for v in losses:
            grads = torch.autograd.grad(v, params, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        jac = torch.stack(rows)
        expected = jac @ jac.T
        assert expected.abs().max() > 1e-6
        torch.testing.assert_close(
            gram, expected, rtol=1e-7, atol=1e-9 * float(expected.abs().max())
        )
        engine.remove()


def _balancer(method: str, tasks: list[Task]) -> balancing.Balancer:
    """The method, seeded where it draws (pcgrad's task order), set up for ``tasks``."""
    seeded = "seed" in balancing.METHODS[method].Options.model_fields
    bal = balancing.get(method, **({"seed": 0} if seeded else {}))
    bal.setup([t.name for t in tasks])
    return bal


def _update(trunk: str, method: str, engine: str) -> list[torch.Tensor]:
    """The gradients one parameter-level step writes, with four tasks (the written-out
    chain's minimum), through the engine the step chose or the (T, P) matrix."""
    tasks = _regression_tasks(("r1", "r2", "r3", "r4"))
    net = _net(trunk, tasks, **small(trunk)).train()
    bal = _balancer(method, tasks)
    assert isinstance(bal, GradientBalancer)
    step = GradientStep(net, tasks, bal, "parameters")
    chosen = "chain" if step.chain is not None else "gramian" if step.gramian else "matrix"
    assert chosen == ("chain" if trunk == "mlp" else "gramian"), (trunk, chosen)
    if engine == "matrix":
        step.close()  # autograd's per-task gradients, the reference
    batch = _batch(tasks)
    torch.manual_seed(5)
    step(batch)
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]


@pytest.mark.parametrize("method", ["mgda", "pcgrad"])
@pytest.mark.parametrize("trunk", ALL)
def test_the_update_through_the_chosen_engine_equals_the_matrix_path(
    trunk: str, method: str
) -> None:
    """Only the MLP is a chain the written-out backward takes; every other trunk goes to
    the Gramian engine, and the update is the one autograd's (T, P) matrix gives."""
    chosen, reference = _update(trunk, method, "chosen"), _update(trunk, method, "matrix")
    assert sum(float(g.abs().sum()) for g in reference) > 0
    for a, b in zip(chosen, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("method", "level"), BALANCING)
@pytest.mark.parametrize("trunk", OTHERS)
def test_it_trains_with_each_method_at_each_level(trunk: str, method: str, level: str) -> None:
    """15 steps of the trainer's step on one batch: the summed loss falls by a third,
    every trunk parameter gets a gradient; at the parameter level a Gramian method runs
    on the Gramian engine (two tasks: no written-out chain) without a fallback."""
    tasks = _regression_tasks()
    net = _net(trunk, tasks, **small(trunk)).train()
    batch = _batch(tasks, n=64)
    bal = _balancer(method, tasks)
    step = GradientStep(net, tasks, bal, level) if isinstance(bal, GradientBalancer) else None
    if step is not None:
        uses_engine = level == "parameters"
        assert (step.gramian is not None) == uses_engine, (method, level)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-2)
    params = [p for p in net.shared_parameters() if p.requires_grad]

    def total() -> float:
        with torch.no_grad():
            outs = net.forward_list(batch.numeric, batch.categorical)
            return sum(
                float(t.loss(o, y, None))
                for t, o, y in zip(tasks, outs, batch.targets, strict=True)
            )

    before = total()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GramianFallbackWarning)
        saved = gramian._WARNED.copy()
        gramian._WARNED.clear()
        try:
            for i in range(15):
                optimiser.zero_grad()
                if step is not None:
                    step(batch)
                else:
                    assert isinstance(bal, LossBalancer)
                    LossStep(net, tasks, bal)(batch)
                if i == 0:
                    missing = [p.shape for p in params if p.grad is None or not p.grad.any()]
                    assert missing == [], missing
                optimiser.step()
        finally:
            gramian._WARNED.update(saved)
    after = total()
    assert math.isfinite(after) and after < 0.67 * before, (before, after)
    print(f"{trunk} {method} at the {level}: summed loss {before:.3f} -> {after:.3f}")


# -- refused where it cannot apply, and bad names / options ------------------------------------


def _fit(df: pd.DataFrame, **options: Any) -> MultiTaskModel:
    options.setdefault("hidden", [8])
    return polytask.fit(df, TASKS[:2], drop=["id", "y_cls"], epochs=1, **options)


def _one_line(err: pytest.ExceptionInfo[PolytaskError], *needles: str) -> str:
    line = str(err.value)
    assert "\n" not in line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


OWN_LAYERS = [n for n, cls in ARCHITECTURES.items() if cls.builds_shared_layers]
SPATIAL = [n for n, cls in ARCHITECTURES.items() if cls.needs_spatial]


@pytest.mark.parametrize("arch", OWN_LAYERS)
@pytest.mark.parametrize("trunk", OTHERS)
def test_refused_with_an_architecture_that_builds_its_own_layers(trunk: str, arch: str) -> None:
    with pytest.raises(PolytaskError) as err:
        _fit(make_table(60), trunk=trunk, trunk_options=small(trunk), architecture=arch)
    _one_line(err, f"model.trunk '{trunk}'", "architecture 'hard'", f"'{arch}'", "mlp")


@pytest.mark.parametrize("arch", SPATIAL)
@pytest.mark.parametrize("trunk", OTHERS)
def test_refused_where_the_representation_is_a_feature_map(trunk: str, arch: str) -> None:
    with pytest.raises(PolytaskError) as err:
        _fit(make_table(60), trunk=trunk, architecture=arch)
    _one_line(err, f"model.trunk '{trunk}'", "feature map", "model.trunk at mlp")


@pytest.mark.parametrize("trunk", OTHERS)
def test_refused_with_several_sources(trunk: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sources = []
    for name in ("left", "right"):
        df = pd.DataFrame(rng.normal(size=(40, 2)), columns=["u", "v"])
        df[f"y_{name}"] = df["u"] - df["v"]
        df.to_csv(tmp_path / f"{name}.csv", index=False)
        sources.append(
            {
                "name": name,
                "data": {"path": str(tmp_path / f"{name}.csv")},
                "tasks": [{"name": f"y_{name}", "kind": "regression"}],
            }
        )
    config = {
        "sources": sources,
        "model": {"hidden": [8], "trunk": trunk},
        "training": {"epochs": 1},
    }
    with pytest.raises(PolytaskError) as err:
        polytask.fit(config=config)
    _one_line(err, f"model.trunk '{trunk}'", "one data source", "model.trunk mlp")


def test_an_unknown_trunk_is_named_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(PolytaskError) as err:
        _fit(make_table(60), trunk="resnt")
    _one_line(err, "model.trunk 'resnt'", "did you mean 'resnet'", ", ".join(TRUNKS))
    make_table(60).to_csv(tmp_path / "d.csv", index=False)
    argv = ["train", "--data", tmp_path / "d.csv", "--task", "y_reg:regression"]
    argv += ["--drop", "id", "--epochs", "1", "--quiet", "--out", tmp_path / "run"]
    line = assert_user_error(call_cli([*argv, "--trunk", "ft_transformr"]), "'ft_transformr'")
    assert "did you mean 'ft_transformer'" in line and ", ".join(TRUNKS) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]  # no run, no partial run


#: (trunk, bad options, what the line must say)
BAD_OPTIONS = [
    ("resnet", {"depth": 2}, ["trunk 'resnet'", "'depth'", "n_blocks, d_hidden_factor"]),
    ("resnet", {"n_blocks": 0}, ["trunk 'resnet'", "'n_blocks'", "greater than 0"]),
    ("ft_transformer", {"d_token": 10, "heads": 4}, ["d_token (10)", "multiple of heads (4)"]),
    ("ft_transformer", {"d_tokens": 8}, ["trunk 'ft_transformer'", "did you mean 'd_token'"]),
    ("tabm", {"k": 0}, ["trunk 'tabm'", "'k'", "greater than 0"]),
    ("mlp", {"k": 4}, ["trunk 'mlp'", "'k'", "takes no options"]),
]


@pytest.mark.parametrize(("trunk", "options", "needles"), BAD_OPTIONS)
def test_a_bad_trunk_option_is_named_with_the_valid_ones(
    trunk: str, options: dict[str, Any], needles: list[str]
) -> None:
    with pytest.raises(PolytaskError) as err:
        _fit(make_table(60), trunk=trunk, trunk_options=options)
    _one_line(err, *needles)


def test_the_option_tables_name_registered_trunks() -> None:
    """A new trunk in the registry gets every test above; its options need no entry."""
    assert set(SMALL) <= set(TRUNKS)
    assert {t for t, _, _ in BAD_OPTIONS} <= set(TRUNKS)
    for name, options in SMALL.items():
        TRUNKS[name].Options(**options)  # the small options are valid ones


@pytest.mark.parametrize("trunk", ["resnet", "tabm"])
def test_a_trunk_that_needs_hidden_widths_says_so(trunk: str) -> None:
    with pytest.raises(PolytaskError) as err:
        _fit(make_table(60), trunk=trunk, hidden=[])
    _one_line(err, f"trunk '{trunk}'", "model.hidden")
