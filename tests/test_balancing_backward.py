"""``polytask.balancing.backward`` in one's own loop: the README example runs, the update
equals the trainer's step on the same model (missing labels included, through either
engine), and two processes write the update of the whole batch."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import polytask.balancing as balancing
from polytask.architectures import ArchitectureSpec
from polytask.architectures.hard import HardSharing
from polytask.encoders import TabularEncoder
from polytask.features.batches import Batch
from polytask.tasks import make_task
from polytask.training.steps import GradientStep

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_the_unlabelled_task_sits_out() -> None:
    text = README.read_text()
    block = re.search(
        r"<!-- byo-example -->\n```python\n(.*?)```\n<!-- /byo-example -->", text, re.S
    )
    assert block is not None
    scope: dict = {}
    exec(compile(block.group(1), "README example", "exec"), scope)
    weights = scope["weights"]
    assert weights[2] == 0.0 and bool((weights[:2] > 0).all())
    assert all(p.grad is not None for p in scope["heads"][0].parameters())
    assert all(p.grad is None or not p.grad.any() for p in scope["heads"][2].parameters())


def _setup(t: int = 3):
    torch.manual_seed(0)
    tasks = []
    for i in range(t):
        task = make_task(
            f"y{i}", "regression", [f"y{i}"], {"standardize": False, "transform": "none"}
        )
        task.fitted = True
        tasks.append(task)
    net = HardSharing(
        ArchitectureSpec(TabularEncoder(5, [4], [3], [12, 8], "relu", 0.0, "layer"), tasks, [6])
    )
    g = torch.Generator().manual_seed(1)
    n = 16
    masks = [None, torch.arange(n) % 2 == 0, torch.zeros(n, dtype=torch.bool)][:t]
    batch = Batch(
        torch.randn(n, 5, generator=g),
        torch.randint(0, 4, (n, 1), generator=g),
        [torch.randn(n, generator=g) for _ in range(t)],
        masks,
    )
    return net, tasks, batch


def _grads(net: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]


def _own_loop(net, tasks, batch, method, engine=None) -> torch.Tensor:
    rec = engine.recording() if engine is not None else None
    if rec is not None:
        with rec:
            rep = net.representation(*batch.inputs)
    else:
        rep = net.representation(*batch.inputs)
    outs = net.heads_forward(rep)
    # the masked mean of a task without labels is NaN: backward() leaves it out
    losses = [
        t.loss(o, y, m) if m is None or m.any() else o.sum() * float("nan")
        for t, o, y, m in zip(tasks, outs, batch.targets, batch.masks, strict=True)
    ]
    return balancing.backward(
        losses, shared=net.shared_parameters(), method=method, representation=rep, engine=engine
    )


@pytest.mark.parametrize("method", ["upgrad", "mgda", "gradnorm", "graddrop"])
@pytest.mark.parametrize("engine", [False, True])
def test_backward_equals_the_trainers_step(method: str, engine: bool) -> None:
    net, tasks, batch = _setup()
    opts = {"seed": 0} if method == "graddrop" else {}
    bal = balancing.get(method, **opts)
    bal.setup([t.name for t in tasks])
    step = GradientStep(net, tasks, bal, "parameters")
    step(batch)
    step.close()
    expected = _grads(net)
    net.zero_grad(set_to_none=True)
    own = balancing.get(method, **opts)
    eng = balancing.GramianEngine([net], net.shared_parameters()) if engine else None
    weights = _own_loop(net, tasks, batch, own, eng)
    for a, b in zip(_grads(net), expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert weights[2] == 0.0 or method == "graddrop"
    if method != "graddrop":
        assert weights.tolist()[:2] == pytest.approx(list(bal.last_weights.values()), rel=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        net, tasks, batch = _setup()
        rows = slice(0, 10) if rank == 0 else slice(10, 16)  # unequal shards
        rep = net.representation(batch.numeric[rows], batch.categorical[rows])
        outs = net.heads_forward(rep)
        masks = [torch.ones(16, dtype=torch.bool) if m is None else m for m in batch.masks]
        losses, counts = [], []
        for t, o, y, m in zip(tasks, outs, batch.targets, masks, strict=True):
            mm = m[rows]
            counts.append(float(mm.sum()))
            losses.append(t.loss(o, y[rows], mm) if mm.any() else o.sum() * float("nan"))
        w = balancing.backward(
            losses,
            shared=net.shared_parameters(),
            method="upgrad",
            representation=rep,
            counts=counts,
        )
        if rank == 0:
            torch.save({"grads": _grads(net), "weights": w}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_write_the_update_of_the_whole_batch(tmp_path: Path) -> None:
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, start_method="spawn", join=True)
    got = torch.load(out)
    net, tasks, batch = _setup()
    weights = _own_loop(net, tasks, batch, "upgrad")
    torch.testing.assert_close(got["weights"], weights, rtol=1e-5, atol=1e-7)
    for a, b in zip(got["grads"], _grads(net), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
