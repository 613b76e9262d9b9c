"""Mistakes and corner cases found in review: each ends in a clear error or a right result."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import polytask
import polytask.balancing as balancing
from polytask.architectures import ArchitectureSpec
from polytask.architectures.hard import HardSharing
from polytask.encoders import TabularEncoder
from polytask.features.batches import Batch
from polytask.tasks import make_task
from polytask.training import checkpoint
from polytask.training.steps import GradientStep
from tests.conftest import FAST_TRAIN, assert_user_error, call_cli, make_table


def _csv(tmp_path, df: pd.DataFrame, name: str = "data.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path) -> None:
    data = _csv(tmp_path, make_table(120))
    precious = tmp_path / "mydata"
    precious.mkdir()
    (precious / "precious.txt").write_text("keep me")
    result = call_cli(
        [
            "train",
            "--data",
            data,
            "--task",
            "y_reg:regression",
            "--out",
            precious,
            "--overwrite",
            *FAST_TRAIN,
        ]
    )
    assert_user_error(result, "not a polytask run")
    assert (precious / "precious.txt").read_text() == "keep me"
    # an existing run is replaced, an empty folder is used
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (empty, empty):
        ok = call_cli(
            [
                "train",
                "--data",
                data,
                "--task",
                "y_reg:regression",
                "--out",
                out,
                "--overwrite",
                *FAST_TRAIN,
            ]
        )
        assert ok.rc == 0, ok.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--hidden", "-3"], "hidden"),
        (["--task", "y_cls:multiclass:label_smoothing=2"], "label_smoothing"),
        (["--task", "y_bin:binary:threshold=1.5"], "threshold"),
    ],
)
def test_bad_model_and_task_values_are_user_errors(tmp_path, args, needle) -> None:
    data = _csv(tmp_path, make_table(80))
    argv = ["train", "--data", data, "--out", tmp_path / "run", *FAST_TRAIN]
    if "--task" not in args:
        argv += ["--task", "y_reg:regression"]
    result = call_cli([*argv, *args])
    assert_user_error(result, needle)


def test_multilabel_empty_separator_and_columns_for_other_kinds(tmp_path) -> None:
    df = make_table(80)
    df["tags"] = np.where(df["x0"] > 0, "a|b", "b")
    data = _csv(tmp_path, df)
    result = call_cli(
        [
            "train",
            "--data",
            data,
            "--task",
            "tags:multilabel:sep=",
            "--out",
            tmp_path / "r1",
            *FAST_TRAIN,
        ]
    )
    assert_user_error(result, "sep")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{path: {data}}}\ntasks:\n  - {{name: t, kind: binary, columns: [x0, x1]}}\n"
    )
    result = call_cli(["train", "--config", config, "--out", tmp_path / "r2", *FAST_TRAIN])
    assert_user_error(result, "multilabel")


def test_gradient_method_without_shared_layers_is_a_user_error(tmp_path) -> None:
    df = make_table(80)[["x0", "x1", "y_reg", "y_bin"]]
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{path: {_csv(tmp_path, df)}}}\n"
        "tasks: [{name: y_reg, kind: regression}, {name: y_bin, kind: binary}]\n"
        "model: {hidden: [], numeric_encoding: standard}\nbalancing: {method: mgda}\n"
        "training: {epochs: 1}\n"
    )
    result = call_cli(["train", "--config", config, "--out", tmp_path / "run", "--quiet"])
    assert_user_error(result, "shared layers")
    # a learned numeric encoding is shared by the heads: there is something to balance
    learned = config.read_text().replace("numeric_encoding: standard", "numeric_encoding: periodic")
    config.write_text(learned)
    result = call_cli(["train", "--config", config, "--out", tmp_path / "run2", "--quiet"])
    assert result.rc == 0, result.err


def test_batch_norm_with_a_one_row_last_batch(tmp_path) -> None:
    df = make_table(101)  # 70 training rows: batches of 23, 23, 24 instead of a lone row
    model = polytask.fit(
        df,
        tasks=["y_reg:regression"],
        norm="batch",
        batch_size=23,
        epochs=2,
        hidden=[8],
        drop=["id"],
    )
    assert math.isfinite(model.history[-1]["train"]["loss"]["y_reg"])


def test_predict_rejects_container_values_with_one_line(tmp_path, trained_run) -> None:
    df = trained_run.df.copy()
    df["x0"] = [[1.0, 2.0]] * len(df)
    data = tmp_path / "lists.parquet"
    df.to_parquet(data, index=False)
    result = call_cli(["predict", trained_run.run, "--data", data, "--output", tmp_path / "p.csv"])
    assert_user_error(result, "x0")


def test_uw_leaves_an_absent_task_alone() -> None:
    uw = balancing.get("uw", init=0.0)
    uw.setup(["a", "b"])
    uw.combine([torch.tensor(2.0), torch.tensor(0.0)]).backward()
    assert float(uw.log_vars.grad[1]) == 0.0  # b had no labels: no pull on its weight
    assert float(uw.log_vars.grad[0]) != 0.0


def _step(bal: balancing.Balancer, i: int) -> torch.Tensor:
    """One step of ``bal`` on inputs that change with ``i``; returns what it produced."""
    g = torch.tensor([[1.0, -0.5, 0.2], [-0.3, 1.0, 0.4]], dtype=torch.float64) * (1 + i)
    if bal.level == "gradient":
        return bal.aggregate(g, losses=[1.0, 0.5]) if bal.needs_losses else bal.aggregate(g)
    out = bal.combine([torch.tensor(1.0 + i), torch.tensor(0.5)]).detach()
    bal.end_epoch({"a": 1.0 + i, "b": 0.5})
    bal.after_update(lambda: [torch.tensor(0.9 + i), torch.tensor(0.5)])
    return out


def _run_a_few_steps(name: str) -> balancing.Balancer:
    opts = {"weights": {"a": 1.0, "b": 2.0}} if name == "weights" else {}
    if "seed" in balancing.METHODS[name].Options.model_fields:
        opts["seed"] = 0
    bal = balancing.get(name, **opts)
    bal.setup(["a", "b"])
    for i in range(3):
        _step(bal, i)
    return bal


@pytest.mark.parametrize("name", sorted(balancing.METHODS))
def test_every_balancer_state_round_trips_through_json(name: str) -> None:
    bal = _run_a_few_steps(name)
    state = json.loads(json.dumps(bal.state(), allow_nan=False))
    if not state:  # no adaptive JSON state: its checkpoint holds no more than this
        # beyond state(): the last weights (RLW: its last draw) and random generators
        rest = set(bal.state_dict()) - {"last_weights", "last", "generator", "rng"}
        assert not rest, f"{name} keeps {rest} in its checkpoint but reports no state()"
    fresh = balancing.get(name, **bal.options.model_dump())
    fresh.setup(["a", "b"])
    if state:
        assert json.loads(json.dumps(fresh.state())) != state  # the steps changed something
    fresh.load_state(state)
    assert json.loads(json.dumps(fresh.state())) == state
    # for most methods that state is empty, so comparing it proves little: the checkpoint
    # state (it adds random generators and tensors) must make a fresh object take the next
    # steps exactly as the one it was saved from
    resumed = balancing.get(name, **bal.options.model_dump())
    resumed.setup(["a", "b"])
    resumed.load_state_dict(checkpoint.from_bytes(checkpoint.to_bytes(bal.state_dict())))
    for i in range(3, 5):
        torch.testing.assert_close(_step(resumed, i), _step(bal, i))


def test_history_is_strict_json_for_methods_without_weights(tmp_path) -> None:
    df = make_table(120)
    polytask.fit(
        df,
        tasks=["y_reg:regression", "y_bin:binary"],
        balancing="graddrop",
        epochs=2,
        hidden=[8],
        drop=["id"],
        out=tmp_path / "run",
    )

    def no_nan(value: str) -> None:
        raise AssertionError(f"non-JSON constant {value}")

    for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=no_nan)
    loaded = polytask.load(tmp_path / "run")
    assert len(loaded.history) == 2  # the history is loaded with the run


def test_gradnorm_trains_each_head_with_its_weight() -> None:
    torch.manual_seed(0)
    tasks = []
    for i in range(2):
        t = make_task(f"y{i}", "regression", [f"y{i}"], {"standardize": False, "transform": "none"})
        t.fitted = True
        tasks.append(t)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(4, [], [], [8], "relu", 0.0, "none"), tasks, [], "relu")
    )
    batch = Batch(
        torch.randn(16, 4),
        torch.zeros(16, 0, dtype=torch.long),
        [torch.randn(16), 10 * torch.randn(16)],
        [None, None],
    )
    plain = GradientStep(net, tasks, balancing.get("sum"), "representation")
    plain(batch)
    heads = [[p.grad.clone() for p in h.parameters()] for h in net.head_modules()]
    net.zero_grad(set_to_none=True)
    gn = balancing.get("gradnorm")
    gn.w = {0: 0.5, 1: 1.5}
    GradientStep(net, tasks, gn, "representation")(batch)
    for t, factor in enumerate((0.5, 1.5)):
        for p, ref in zip(net.head_modules()[t].parameters(), heads[t], strict=True):
            torch.testing.assert_close(p.grad, factor * ref)


def test_undefined_monitor_falls_back_to_the_loss() -> None:
    df = make_table(200)
    val = df.iloc[:30].copy()
    val["y_bin"] = "yes"  # one class: AUROC is undefined on validation
    with pytest.warns(UserWarning, match="undefined on the validation"):
        model = polytask.fit(
            df.iloc[30:],
            tasks=["y_bin:binary"],
            validation=val,
            monitor="y_bin.auroc",
            epochs=3,
            hidden=[8],
            drop=["id"],
        )
    assert model.info["best_epoch"] >= 1


def test_unknown_monitor_metric_fails_before_training() -> None:
    with pytest.raises(polytask.PolytaskError, match="has no metric 'f1'"):
        polytask.fit(
            make_table(80), tasks=["y_bin:binary"], monitor="y_bin.f1", epochs=1, hidden=[8]
        )


def test_batches_count_the_batches_holding_each_tasks_labels() -> None:
    from polytask.features.batches import TensorTable
    from polytask.features.preprocess import FeatureTensors

    n = 10
    labelled = torch.tensor([1, 0, 0, 0, 0, 0, 1, 0, 0, 1], dtype=torch.bool)
    table = TensorTable(
        FeatureTensors(torch.zeros(n, 1), torch.zeros(n, 0, dtype=torch.long)),
        [torch.zeros(n), torch.zeros(n)],
        [labelled, torch.ones(n, dtype=torch.bool)],
    )
    sizes = [len(b) for b in table.batches(3, shuffle=False)]
    assert sizes == [3, 3, 4]  # a one-row tail joins the batch before it
    assert table.batches_with_labels == [2, 3]  # rows 0 | none | 6, 9


def test_balancing_flag_names_and_stale_options(tmp_path) -> None:
    data = _csv(tmp_path, make_table(80))
    base = [
        "train",
        "--data",
        data,
        "--task",
        "y_reg:regression",
        "--task",
        "y_bin:binary",
        *FAST_TRAIN,
    ]
    assert_user_error(
        call_cli([*base, "--out", tmp_path / "a", "--balancing", "pcgard"]), "did you mean 'pcgrad'"
    )
    config = tmp_path / "c.yaml"
    config.write_text("balancing: {method: cagrad, c: 0.4}\n")
    stale = call_cli([*base, "--out", tmp_path / "b", "--config", config, "--balancing", "ew"])
    assert_user_error(stale, "unknown key 'c'")
    ok = call_cli([*base, "--out", tmp_path / "c", "--config", config])
    assert ok.rc == 0, ok.err
    run = polytask.load(tmp_path / "c")
    assert run.config.balancing.method == "cagrad" and run.config.balancing.options == {"c": 0.4}
