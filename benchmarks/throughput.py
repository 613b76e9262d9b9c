"""Training and prediction throughput: polytask's trainer vs plain PyTorch loops.

Model (as in the issue): 10 numeric inputs -> 128 -> 64 (ReLU, no norm, no dropout) -> a
1-unit regression head and a 3-class head, on 100,000 synthetic rows (fixed seed). For
batch sizes 256 and 32, in one run and interleaved (the order rotates every repeat), the
median of several repeats of one epoch (``--small-batch-steps`` shortens batch 32) of:

* polytask: ``Trainer.fit`` for one epoch with the trainer's defaults (AdamW with weight
  decay off biases, cosine schedule, early-stopping bookkeeping, best-weights snapshot,
  per-task loss tracking, history); no validation, no progress bar (as ``polytask.fit``),
* polytask +val: the same with a 2,000-row validation set scored every epoch,
* DataLoader: ``DataLoader(TensorDataset(...), batch_size, shuffle=True)`` and Adam,
* slicing: a per-epoch permutation, contiguous slices and fused AdamW.

Then prediction over the 100,000 rows (polytask's ``raw_outputs`` on tensors,
``MultiTaskModel.predict_raw`` on the DataFrame, a plain ``model(x)`` under
``inference_mode`` on all rows at once and in polytask's eval-batch chunks) and the peak
RSS of a process that only trains polytask. Run alone:

    python benchmarks/throughput.py [--quick] [--repeats 5] [--rows 100000]

Other processes on the machine slow every loop alike within one run; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import polytask
from polytask.architectures import MultiTaskNet
from polytask.balancing import get as get_balancer
from polytask.config import RunConfig
from polytask.features.batches import TensorTable
from polytask.features.preprocess import FeatureTensors, Preprocessor
from polytask.metrics.scoring import raw_outputs
from polytask.model import MultiTaskModel, build_net, build_tasks
from polytask.tasks import Task
from polytask.training import Trainer

FEATURES = [f"x{i}" for i in range(10)]
TASKS = ["y_reg:regression", "y_cls:multiclass"]
HIDDEN = [128, 64]
LR = 2e-3
VAL_ROWS = 2_000
LOOPS = ["polytask", "polytask +val", "DataLoader", "slicing"]


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    """Standard-normal features, a noisy linear target and a 3-class target (tertiles)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, len(FEATURES))).astype(np.float32)
    df = pd.DataFrame(x, columns=FEATURES)
    df["y_reg"] = x @ rng.standard_normal(len(FEATURES)) + 0.1 * rng.standard_normal(rows)
    score = x @ rng.standard_normal(len(FEATURES)) + 0.5 * rng.standard_normal(rows)
    df["y_cls"] = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    return df


def encode(tasks: list[Task], pre: Preprocessor, df: pd.DataFrame) -> TensorTable:
    encoded = [t.encode(t.labels_of(df)) for t in tasks]
    return TensorTable(pre.transform(df), [y for y, _ in encoded], [m for _, m in encoded])


@dataclass
class Setup:
    cfg: RunConfig
    tasks: list[Task]
    pre: Preprocessor
    train: TensorTable
    val: TensorTable

    def net(self) -> MultiTaskNet:
        torch.manual_seed(0)
        return build_net(self.cfg, self.pre, self.tasks)


def polytask_setup(df: pd.DataFrame, val_df: pd.DataFrame, batch_size: int) -> Setup:
    """What ``polytask.api.train_run`` builds, minus the splitting and the final scoring."""
    cfg = polytask.build_config(
        tasks=TASKS,
        hidden=HIDDEN,
        numeric_encoding="standard",  # the plain loop's model: standardised numbers in
        norm="none",
        dropout=0.0,
        activation="relu",
        lr=LR,
        epochs=1,
        batch_size=batch_size,
        device="cpu",
    )
    tasks = build_tasks(cfg)
    for t in tasks:
        t.fit(t.labels_of(df))
    pre = Preprocessor.fit(df, dict.fromkeys(FEATURES, "numeric"))
    return Setup(cfg, tasks, pre, encode(tasks, pre, df), encode(tasks, pre, val_df))


class PlainNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(
            nn.Linear(len(FEATURES), HIDDEN[0]), nn.ReLU(), nn.Linear(*HIDDEN), nn.ReLU()
        )
        self.reg = nn.Linear(HIDDEN[-1], 1)
        self.cls = nn.Linear(HIDDEN[-1], 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.reg(h).squeeze(-1), self.cls(h)


def plain_loss(net: PlainNet, x: torch.Tensor, y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    reg, cls = net(x)
    return F.mse_loss(reg, y) + F.cross_entropy(cls, k)


# -- one timed pass per loop (the network is built before the clock starts) -----------------
def time_polytask(setup: Setup, train: TensorTable, with_val: bool) -> float:
    net = setup.net()
    start = time.perf_counter()
    trainer = Trainer(net, setup.tasks, get_balancer("ew"), setup.cfg.training, verbose=False)
    trainer.fit(train, setup.val if with_val else None)
    return time.perf_counter() - start


def time_dataloader(tensors: tuple[torch.Tensor, ...], batch_size: int) -> float:
    net = PlainNet()
    start = time.perf_counter()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True)
    for x, y, k in loader:
        loss = plain_loss(net, x, y, k)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def time_slicing(tensors: tuple[torch.Tensor, ...], batch_size: int) -> float:
    net = PlainNet()
    start = time.perf_counter()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, fused=True)
    perm = torch.randperm(len(tensors[0]))
    x, y, k = (t[perm] for t in tensors)
    for s in range(0, len(x), batch_size):
        e = s + batch_size
        loss = plain_loss(net, x[s:e], y[s:e], k[s:e])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def subset(table: TensorTable, rows: int) -> TensorTable:
    f = table.features
    return TensorTable(
        FeatureTensors(f.numeric[:rows], f.categorical[:rows]),
        [t[:rows] for t in table.targets],
        [m[:rows] for m in table.masks],
    )


def interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Seconds per repeat for each run; one warm-up each, then the order rotates."""
    for run in runs.values():
        run()
    names = list(runs)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(runs[name]())
    return seconds


def training(df: pd.DataFrame, batch_size: int, rows: int, repeats: int) -> dict[str, float]:
    """Median samples/s per loop at one batch size, over ``rows`` rows per repeat."""
    setup = polytask_setup(df, make_frame(VAL_ROWS, seed=1), batch_size)
    train = subset(setup.train, rows)
    tensors = (train.features.numeric, train.targets[0], train.targets[1])
    runs = {
        "polytask": lambda: time_polytask(setup, train, with_val=False),
        "polytask +val": lambda: time_polytask(setup, train, with_val=True),
        "DataLoader": lambda: time_dataloader(tensors, batch_size),
        "slicing": lambda: time_slicing(tensors, batch_size),
    }
    seconds = interleaved(runs, repeats)
    return {name: rows / statistics.median(s) for name, s in seconds.items()}


def prediction(df: pd.DataFrame, repeats: int) -> dict[str, float]:
    """Median rows/s of prediction over all of ``df``."""
    setup = polytask_setup(df.iloc[:VAL_ROWS], df.iloc[:VAL_ROWS], 256)
    model = MultiTaskModel(setup.cfg, setup.pre, setup.tasks, setup.net())
    feats = setup.pre.transform(df)
    eval_batch = setup.cfg.training.eval_batch_size
    plain = PlainNet().eval()
    x = feats.numeric

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        return run

    def plain_forward() -> None:
        with torch.inference_mode():
            plain(x)

    def plain_chunked() -> None:
        with torch.inference_mode():
            parts = [plain(x[s : s + eval_batch]) for s in range(0, len(x), eval_batch)]
            [torch.cat(p) for p in zip(*parts, strict=True)]

    runs = {
        "polytask raw_outputs (tensors)": timed(
            lambda: raw_outputs(model.net, feats, eval_batch, torch.device("cpu"))
        ),
        "polytask predict_raw (DataFrame)": timed(lambda: model.predict_raw(df)),
        "plain model(x), inference_mode": timed(plain_forward),
        f"plain, {eval_batch:,}-row chunks + cat": timed(plain_chunked),
    }
    seconds = interleaved(runs, repeats)
    return {name: len(df) / statistics.median(s) for name, s in seconds.items()}


def own_peak_rss_mib() -> float:
    """This process's peak RSS. Linux's VmHWM belongs to the process's own address space;
    ``ru_maxrss`` can report the parent's peak instead, which it inherits across the
    (v)fork + exec that starts a subprocess."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_child(rows: int, batch_size: int) -> None:
    """Train polytask for one epoch (with validation) and print the peak RSS (JSON)."""
    setup = polytask_setup(make_frame(rows, seed=0), make_frame(VAL_ROWS, seed=1), batch_size)
    time_polytask(setup, setup.train, with_val=True)
    print(json.dumps({"peak_rss_mib": own_peak_rss_mib()}))


def peak_rss(rows: int, batch_size: int) -> float:
    cmd = [sys.executable, __file__, "--rss-child", "--rows", str(rows), "--batch", str(batch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_rss_mib"])


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--small-batch-steps",
        type=int,
        help="at batch 32, time this many steps per repeat instead of a whole epoch",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 20,000 rows, 2 repeats")
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rows, args.batch)
        return
    if args.quick:
        args.rows, args.repeats, args.small_batch_steps = 20_000, 2, 200

    started = time.perf_counter()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {machine()}")
    print(f"{args.rows:,} rows, median of {args.repeats} interleaved repeats\n")
    df = make_frame(args.rows, seed=0)

    print(f"{'training':<10}{'loop':<16}{'samples/s':>12}{'rows/repeat':>13}")
    ratios = {}
    for batch in (256, 32):
        steps = args.small_batch_steps if batch < 256 else None
        rows = min(args.rows, batch * steps) if steps else args.rows
        rates = training(df, batch, rows, args.repeats)
        for name in LOOPS:
            print(f"{'batch ' + str(batch):<10}{name:<16}{rates[name]:>12,.0f}{rows:>13,}")
        ratios[batch] = (
            rates["polytask"] / rates["DataLoader"],
            rates["polytask"] / rates["slicing"],
        )
        print(
            f"{'':<10}polytask/DataLoader {ratios[batch][0]:.2f}x   "
            f"polytask/slicing {ratios[batch][1]:.2f}x\n"
        )

    print(f"{'prediction (' + format(args.rows, ',') + ' rows)':<42}{'rows/s':>12}")
    pred = prediction(df, args.repeats)
    for name, rate in pred.items():
        print(f"{name:<42}{rate:>12,.0f}")
    rss = peak_rss(args.rows, 256)
    print(f"\npeak RSS of a process that only trains polytask (batch 256): {rss:.0f} MiB")

    dl, sl = ratios[256]
    print(
        f"\ntargets at batch 256: polytask/DataLoader {dl:.2f}x (>= 2: "
        f"{'met' if dl >= 2 else 'NOT met'}), polytask/slicing {sl:.2f}x (>= 0.9: "
        f"{'met' if sl >= 0.9 else 'NOT met'}), peak RSS {rss:.0f} MiB (< 500: "
        f"{'met' if rss < 500 else 'NOT met'})"
    )
    if args.quick:
        print("(--quick: too few rows and repeats to judge the targets)")
    print(f"benchmark time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
