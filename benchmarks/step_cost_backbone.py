"""Step cost on a MiniLM-sized transformer backbone: the Gramian engine against `ew`.

A BERT encoder built randomly from its config (6 layers, hidden 384, 12 heads,
intermediate 1536, vocabulary 30522; no download), mean-pooled, T linear heads, MSE,
fused AdamW over everything. Rows: polytask's `ew` step, Gramian methods at parameter
level (the Gramian engine: every parameter of this backbone is a Linear, Embedding or
LayerNorm), the same at the representation, the (T, P) matrix path (autograd's batched
backward) for UPGrad, and torchjd's autogram engine with UPGrad where torchjd is
installed. Time: median of interleaved repeats. Peak memory: each row once more in a
fresh process, the largest resident set (``/proc/self/statm``, sampled every 0.5 ms by a
thread) during one step minus the resident set just before it, after a warm-up step
(so the optimiser's moments exist in both), with glibc told to return freed blocks
(``MALLOC_MMAP_THRESHOLD_=65536``, ``MALLOC_TRIM_THRESHOLD_=0``). Run from step_cost.py:

    python benchmarks/step_cost.py --backbone minilm [--tasks 10] [--batch 8] [--seq 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

import polytask.balancing as balancing
from polytask.architectures import ArchitectureSpec
from polytask.architectures.hard import HardSharing
from polytask.balancing.solvers import SolverWarning
from polytask.features.batches import Batch
from polytask.tasks import make_task
from polytask.training.steps import GradientStep, make_step

PAGE = os.sysconf("SC_PAGE_SIZE")


class Backbone(nn.Module):
    """Token ids -> the mean of BERT's last hidden states (an encoder polytask can wrap)."""

    spatial = False
    trunk = None

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig(
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
            attn_implementation="eager",
        )
        self.bert = BertModel(config, add_pooling_layer=False)
        self.out_features = 384

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor, ids: torch.Tensor):
        return self.bert(input_ids=ids).last_hidden_state.mean(1)


def build(t: int, batch: int, seq: int) -> tuple[HardSharing, list, Batch]:
    torch.manual_seed(0)
    tasks = []
    for i in range(t):
        task = make_task(
            f"t{i}", "regression", [f"t{i}"], {"standardize": False, "transform": "none"}
        )
        task.fitted = True
        tasks.append(task)
    net = HardSharing(ArchitectureSpec(Backbone(), tasks, [], "relu", 0.0))  # type: ignore[arg-type]
    ids = torch.randint(0, 30522, (batch, seq))
    data = Batch(
        torch.zeros(batch, 0),
        torch.zeros(batch, 0, dtype=torch.long),
        [torch.randn(batch) for _ in range(t)],
        [None] * t,
        (ids,),
    )
    return net, tasks, data


def runner(row: str, t: int, batch: int, seq: int) -> Callable[[], None]:
    net, tasks, data = build(t, batch, seq)
    if row == "torchjd UPGrad (autogram)":
        return _autogram(net, tasks, data)
    name, _, how = row.partition(" @")
    bal = balancing.get(name)
    bal.setup([x.name for x in tasks])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)
    level = "representation" if how == "rep" else "parameters"
    step = make_step(net, tasks, bal, level)
    if how == "par matrix" and isinstance(step, GradientStep):
        step.close()  # no Gramian engine: autograd's batched (T, P) blocks

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        step(data)
        opt.step()

    return run


def _autogram(net: HardSharing, tasks: list, data: Batch) -> Callable[[], None]:
    from torchjd.aggregation import UPGradWeighting
    from torchjd.autogram import Engine

    engine = Engine(net.encoder, batch_dim=None)  # type: ignore[arg-type]
    weighting = UPGradWeighting()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        outs = net.forward_list(*data.inputs)
        losses = torch.stack(
            [t.loss(o, y, None) for t, o, y in zip(tasks, outs, data.targets, strict=True)]
        )
        losses.backward(weighting(engine.compute_gramian(losses)))
        opt.step()

    return run


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def peak_mib(run: Callable[[], None]) -> float:
    """Largest resident set during one step minus the one before it, in MiB."""
    run()  # warm-up: optimiser moments, buffers
    base, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    th = threading.Thread(target=sample)
    th.start()
    run()
    done.set()
    th.join()
    return (max(peak[0], _rss()) - base) / 2**20


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="minilm")
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--methods", default="upgrad,mgda,mean,cagrad,nash_mtl,imtl_g")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", SolverWarning)
    t, b, s = args.tasks, args.batch, args.seq
    if args.child:
        print(json.dumps({"peak_mib": peak_mib(runner(args.child, t, b, s))}))
        return
    rows = ["ew"] + [f"{m} @par" for m in args.methods.split(",")]
    rows += ["upgrad @rep", "upgrad @par matrix"]
    try:
        import torchjd.autogram  # noqa: F401

        rows.append("torchjd UPGrad (autogram)")
    except ImportError:
        pass
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, BERT 6 x 384 (12 heads),"
        f" T = {t}, batch {b} x {s} tokens, median of {args.repeats} x {args.steps} steps"
    )
    runs = {r: runner(r, t, b, s) for r in rows}
    times: dict[str, list[float]] = {r: [] for r in rows}
    for run in runs.values():
        run()  # warm-up
    for _ in range(args.repeats):
        for r, run in runs.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                run()
            times[r].append((time.perf_counter() - t0) / args.steps * 1e3)
    del runs
    peaks = {}
    for r in rows:
        cmd = [sys.executable, __file__, "--child", r, "--tasks", str(t), "--batch", str(b)]
        # freed blocks go back to the system at once, so the warm-up's pages do not hide
        # the measured step's (glibc otherwise raises its mmap threshold and keeps them)
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        out = subprocess.run(
            [*cmd, "--seq", str(s)], capture_output=True, text=True, check=True, env=env
        )
        peaks[r] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    ew_ms, ew_mib = statistics.median(times["ew"]), peaks["ew"]
    print(f"{'row':<30}{'ms/step':>10}{'x ew':>7}{'peak MiB':>10}{'x ew':>7}")
    for r in rows:
        ms = statistics.median(times[r])
        print(f"{r:<30}{ms:>10.1f}{ms / ew_ms:>7.2f}{peaks[r]:>10.1f}{peaks[r] / ew_mib:>7.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
