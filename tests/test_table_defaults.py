"""Training defaults chosen from the table (issue 16 point 3): batch size, learning rate,
epochs and patience from the rows and features, written into the saved config; an
explicit value wins; focal loss for a binary task; ``training.monitor`` by metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import polytask
from polytask.config import parse_config, table_defaults
from polytask.errors import PolytaskError
from polytask.tasks.binary import BinaryTask, binary_loss
from polytask.tasks.grouped import grouped_losses
from polytask.training.monitor import Monitor, kept_for
from polytask.training.staging import config_conflicts


def _table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame(
        {
            "a": x[:, 0],
            "b": x[:, 1],
            "c": x[:, 2],
            "g": rng.choice(["p", "q", "r"], size=n),
            "y": x[:, 0] - 2 * x[:, 1] + 0.1 * rng.normal(size=n),
            "rare": (x[:, 0] + x[:, 2] > 1.6).astype(int),  # about 13% positive
        }
    )


def test_the_values_follow_the_table_size() -> None:
    small = table_defaults.table_defaults(350, 34)  # the 500-patient cohort's training split
    big = table_defaults.table_defaults(235_743, 13)  # the flights table's
    assert small == {"batch_size": 32, "lr": 0.002, "epochs": 200, "patience": 20}
    # a large table: big batches at a larger rate, few epochs, bounded by the compute budget
    assert big == {"batch_size": 1024, "lr": 0.00317, "epochs": 30, "patience": 6}
    assert table_defaults.table_defaults(6374, 34)["batch_size"] == 256  # SUPPORT2: as before
    assert table_defaults.table_defaults(3_000_000, 40)["epochs"] == 1  # the budget binds


def test_fit_states_the_chosen_values_and_a_given_one_wins(tmp_path, capsys) -> None:
    df = _table(300)
    model = polytask.fit(df, ["y:regression"], epochs=3, out=tmp_path / "run", verbose=True)
    t = model.config.training
    chosen = table_defaults.table_defaults(210, 5)  # 70% of 300 rows; a, b, c, g, rare
    assert (t.epochs, t.batch_size, t.lr, t.patience) == (3, 32, chosen["lr"], 5)
    err = capsys.readouterr().err
    head = "training, chosen from 210 rows and 5 features:\n"
    assert f"{head}  batch_size 32, lr {chosen['lr']}, patience 5\n" in err  # epochs: given
    saved = polytask.load(tmp_path / "run").config
    assert saved.training == t  # the saved run states every value: a rerun reproduces it
    again = polytask.fit(df, ["y:regression"], config=saved)
    pd.testing.assert_frame_equal(again.predict(df), model.predict(df))
    # resuming with the keys left auto is no conflict with the values the run chose
    auto = parse_config({"tasks": [{"name": "y", "kind": "regression"}]})
    assert not [c for c in config_conflicts(saved, auto) if "training" in c]


def test_an_unresolved_auto_key_is_a_clear_error() -> None:
    with pytest.raises(PolytaskError, match=r"training.batch_size is 'auto' but no table"):
        table_defaults.fixed(parse_config({}).training)


def test_focal_loss_is_cross_entropy_scaled_towards_hard_rows() -> None:
    logits = torch.tensor([3.0, -3.0, 0.2, -0.4])
    target = torch.tensor([1.0, 1.0, 0.0, 1.0])
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    torch.testing.assert_close(binary_loss(logits, target, None, 0.0), bce)
    focal = binary_loss(logits, target, torch.tensor(4.0), 2.0)
    p_true = torch.tensor([torch.sigmoid(torch.tensor(3.0)), torch.sigmoid(torch.tensor(-3.0))])
    expected = (1 - p_true) ** 2 * bce[:2] * 4.0
    torch.testing.assert_close(focal[:2], expected)
    assert focal[0] < 0.003 * bce[0] * 4 and focal[1] > 0.9 * bce[1] * 4  # easy row: tiny


def test_focal_tasks_group_apart_and_give_each_task_its_loss() -> None:
    labels = pd.Series([1, 0, 1, 0, 1])
    tasks = [
        BinaryTask("f1", ["f1"], BinaryTask.Options(loss="focal", gamma=2.0)),
        BinaryTask("f2", ["f2"], BinaryTask.Options(loss="focal", gamma=2.0)),
        BinaryTask("b", ["b"], BinaryTask.Options()),
    ]
    for t in tasks:
        t.fit(labels)
    assert tasks[0].group_key() == tasks[1].group_key() != tasks[2].group_key()
    outs = [torch.randn(5, 1, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    target = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    grouped = grouped_losses(tasks, outs, [target] * 3, [None] * 3)
    for task, out, loss in zip(tasks, outs, grouped, strict=True):
        torch.testing.assert_close(loss, task.mean_loss(out, target))


def test_a_rare_outcome_trains_with_focal_loss_and_auroc_as_monitor(tmp_path) -> None:
    df = _table(600)
    model = polytask.fit(
        df,
        ["rare:binary:loss=focal:gamma=2", "y:regression"],
        epochs=8,
        monitor="auroc",
        out=tmp_path / "run",
    )
    assert model.metrics["test"]["rare"]["auroc"] > 0.9
    loaded = polytask.load(tmp_path / "run")
    assert loaded.tasks[0].options.loss == "focal" and loaded.config.training.monitor == "auroc"
    pd.testing.assert_frame_equal(loaded.predict(df), model.predict(df))


def test_monitor_by_metric_name_and_its_errors() -> None:
    labels = pd.Series([1, 0, 1, 0])
    a, b = BinaryTask("a", ["a"]), BinaryTask("b", ["b"])
    a.fit(labels), b.fit(labels)
    monitor = Monitor("auroc", [a, b])
    assert monitor.watched == [("a", "auroc"), ("b", "auroc")]
    assert monitor.value({}, {"a": {"auroc": 0.8}, "b": {"auroc": 0.6}}) == pytest.approx(-0.7)
    with pytest.raises(PolytaskError, match=r"training.monitor 'aurocc' is not 'loss'.*auroc"):
        Monitor("aurocc", [a, b])
    assert kept_for("auroc", "a", "binary") == "auroc"
    assert kept_for("auroc", "y", "regression") == "loss"
    assert kept_for("a.auroc", "b", "binary") == "loss"
