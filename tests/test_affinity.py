"""Task affinity by lookahead: it measures what it says, costs what it reports, and leaves
training exactly as it would be without it."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from polytask.analysis.affinity import TaskAffinity, affinity_cost, affinity_over_training
from polytask.analysis.grouping import recommend_groups
from polytask.api import build_config, train_run
from polytask.training.steps import batch_losses
from tests.conftest import make_synthetic, make_table


def _related(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """a and a_copy: the same target; minus_a: its negative; noise: unrelated."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
    df["a"] = x[:, 0] + np.sin(2 * x[:, 1]) + 0.1 * rng.normal(size=n)
    df["a_copy"] = df["a"]
    df["minus_a"] = -df["a"]
    df["noise"] = rng.normal(size=n)
    return df


@pytest.mark.parametrize("method", ["ew", "upgrad", "famo"])
def test_training_with_the_callback_gives_identical_weights(method: str) -> None:
    """Dropout on, a stateful or gradient-level balancer: the measurement must draw no
    random numbers, touch no .grad and restore the parameters bit for bit."""
    df = make_table(300, seed=3)
    cfg = build_config(
        None,
        ["y_reg:regression", "y_bin:binary", "y_cls:multiclass"],
        epochs=3,
        hidden=[24, 16],
        dropout=0.3,
        batch_size=64,
        balancing=method,
        drop=["id"],
    )
    plain = train_run(cfg, df, verbose=False)
    affinity = TaskAffinity(every=2)
    measured = train_run(cfg, df, verbose=False, callbacks=[affinity])
    a, b = plain.net.state_dict(), measured.net.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert affinity.measurements == 3 * 2  # 210 rows / 64 -> 4 steps an epoch, every 2nd
    assert [r["train"] for r in plain.history] == [r["train"] for r in measured.history]
    assert all("affinity" not in r for r in plain.history)
    rec = measured.history[-1]["affinity"]
    assert set(rec["matrix"]) == {"y_reg", "y_bin", "y_cls"}
    assert rec["steps"] == 2 and rec["every"] == 2
    assert rec["seconds"] > 0 and 0 < rec["share"] < 1
    assert affinity.seconds > 0 and 0 < affinity.share < 1


def test_z_is_the_lookahead_formula_on_one_batch() -> None:
    """Z[i][j] = 1 − L_j(θ_s − lr ∇θs L_i) / L_j(θ_s) against a hand-made lookahead."""
    df = make_synthetic(200, seed=1)
    cfg = build_config(None, ["y1:regression", "y2:binary"], epochs=1, hidden=[16], dropout=0.0)
    seen: dict[str, object] = {}

    class Capture(TaskAffinity):  # the first batch and the net as the callback saw them
        def on_batch_begin(self, trainer, step, batch):  # type: ignore[no-untyped-def]
            if step == 1:
                seen["net"] = copy.deepcopy(trainer.net)
                seen["batch"] = batch
                seen["lr"] = trainer.optimizer.param_groups[0]["lr"]
                seen["loss"] = [t.loss for t in trainer.tasks]
            super().on_batch_begin(trainer, step, batch)

        def on_epoch_end(self, trainer, record):  # type: ignore[no-untyped-def]
            if "first" not in seen:
                seen["first"] = (self._sums / np.maximum(self._counts, 1)).copy()
            super().on_epoch_end(trainer, record)

    cfg.training.batch_size = 200  # one batch an epoch: the epoch mean is that batch's Z
    capture = Capture(every=1)
    train_run(cfg, df, verbose=False, callbacks=[capture])
    net, batch, lr = seen["net"], seen["batch"], seen["lr"]
    net.eval()
    loss_fns = seen["loss"]

    def losses(model):  # type: ignore[no-untyped-def]
        return [
            float(x.detach())
            for x in batch_losses(loss_fns, model.forward_list(*batch.inputs), batch)
        ]

    before = losses(net)
    expected = np.zeros((2, 2))
    for i in range(2):
        moved = copy.deepcopy(net)
        shared = [p for p in moved.shared_parameters() if p.requires_grad]
        outs = moved.forward_list(*batch.inputs)
        li = batch_losses(loss_fns, outs, batch)[i]
        grads = torch.autograd.grad(li, shared)
        with torch.no_grad():
            for p, g in zip(shared, grads, strict=True):
                p -= lr * g
        after = losses(moved)
        expected[i] = [1 - after[j] / before[j] for j in range(2)]
    np.testing.assert_allclose(seen["first"], expected, rtol=1e-4, atol=1e-9)
    assert capture.measurements == 1


def test_affinity_sees_related_tasks_and_groups_them() -> None:
    """a, a_copy and minus_a need the same features (a head can flip the sign), so steps
    on one lower the others' losses; noise shares nothing with them."""
    df = _related(600)
    tasks = ["a:regression", "a_copy:regression", "minus_a:regression", "noise:regression"]
    cfg = build_config(None, tasks, epochs=10, hidden=[32], dropout=0.0, batch_size=32, lr=0.01)
    model = train_run(cfg, df, verbose=False, callbacks=[TaskAffinity(every=2)])
    names, z, per_epoch = affinity_over_training(model.history)
    assert names == ["a", "a_copy", "minus_a", "noise"] and per_epoch.shape == (10, 4, 4)
    related = [0, 1, 2]
    off = [(i, j) for i in related for j in related if i != j]
    assert min(z[i, j] for i, j in off) > 0
    smallest_related = min(z[i, j] for i, j in off)
    assert np.abs(z[3, :3]).max() < 0.2 * smallest_related
    assert np.abs(z[:3, 3]).max() < 0.2 * smallest_related
    assert all(z[i, i] > 0 for i in range(4))
    best = recommend_groups(names, z, 2)
    assert sorted(sorted(g) for g in best.groups) == [["a", "a_copy", "minus_a"], ["noise"]]
    spent, share = affinity_cost(model.history)
    assert spent > 0 and 0 < share < 1


def test_affinity_every_must_be_positive() -> None:
    from polytask import PolytaskError

    with pytest.raises(PolytaskError, match="N >= 1"):
        TaskAffinity(every=0)


def test_train_flag_records_affinity(run_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d.csv"
    make_synthetic(200, seed=2).to_csv(data, index=False)
    r = run_cli(
        [
            "train",
            "--data",
            data,
            "--task",
            "y1:regression",
            "--task",
            "y2:binary",
            "--out",
            tmp_path / "run",
            "--epochs",
            "2",
            "--hidden",
            "16",
            "--quiet",
            "--affinity-every",
            "1",
            "--no-report",
        ]
    )
    assert r.rc == 0, r.err
    import polytask

    model = polytask.load(tmp_path / "run")
    assert all("affinity" in rec for rec in model.history)
    assert not (tmp_path / "run" / "report.html").exists()
