"""Loss values computed a kind at a time equal each task's own loss."""

from __future__ import annotations

import pandas as pd
import torch

from polytask.tasks import make_task
from polytask.tasks.grouped import grouped_losses


def _tasks() -> list:
    tasks = []
    for name, kind, opts in [
        ("r1", "regression", {"standardize": False, "transform": "none"}),
        ("b1", "binary", {}),
        ("r2", "regression", {"standardize": False, "transform": "none"}),
        ("h1", "regression", {"loss": "huber", "huber_delta": 0.5, "transform": "none"}),
        ("h2", "regression", {"loss": "huber", "huber_delta": 0.5, "transform": "none"}),
        ("b2", "binary", {"pos_weight": "balanced"}),
        ("c1", "count", {}),
        ("c2", "count", {}),
        ("m1", "multiclass", {}),
        ("r3", "regression", {"standardize": False, "transform": "none"}),
    ]:
        task = make_task(name, kind, [name], opts)
        if kind == "binary":
            task.fit(pd.Series([0, 1, 1, 1, 0, 1], name=name))
        elif kind == "multiclass":
            task.fit(pd.Series(["a", "b", "c"], name=name))
        elif kind == "count":
            task.fit(pd.Series([0, 2, 5, 1], name=name))
        else:
            task.fit(pd.Series([0.5, 1.5, 3.0, 2.0], name=name))
        tasks.append(task)
    return tasks


def _data(tasks: list, n: int, masked: bool):
    g = torch.Generator().manual_seed(0)
    outs, targets, masks = [], [], []
    for i, t in enumerate(tasks):
        outs.append(torch.randn(n, t.output_size, generator=g))
        if t.kind == "multiclass":
            targets.append(torch.randint(0, 3, (n,), generator=g))
        elif t.kind == "binary":
            targets.append(torch.randint(0, 2, (n,), generator=g).float())
        elif t.kind == "count":
            targets.append(torch.randint(0, 6, (n,), generator=g).float())
        else:
            targets.append(torch.randn(n, generator=g) * 3)
        masks.append(torch.rand(n, generator=g) > 0.4 if masked and i % 2 == 0 else None)
    if masked:
        masks[2] = torch.zeros(n, dtype=torch.bool)  # a task with no label in the batch
    return outs, targets, masks


def test_grouped_losses_equal_each_tasks_loss() -> None:
    tasks = _tasks()
    assert any(t._pw is not None for t in tasks if t.kind == "binary")  # a weighted one
    for masked in (False, True):
        outs, targets, masks = _data(tasks, 37, masked)
        got = grouped_losses(tasks, outs, targets, masks)
        want = [t.loss(o, y, m) for t, o, y, m in zip(tasks, outs, targets, masks, strict=True)]
        assert len(got) == len(tasks)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
        if masked:
            assert float(got[2]) == 0.0  # no label: exactly 0, as Task.loss gives
