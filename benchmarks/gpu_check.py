"""Train one example config and report its step time and peak memory (gpu_check.sh).

Each training step is timed between the trainer's ``on_batch_begin`` and ``on_batch_end``
hooks (with ``torch.cuda.synchronize`` on a GPU, so the time is the GPU's), the first
steps left out as warm-up; peak memory is ``torch.cuda.max_memory_allocated`` on a GPU and
the process's peak resident set on a CPU. Prints one Markdown table row:

    python benchmarks/gpu_check.py CONFIG [--epochs N] [--device auto|cpu|cuda]
        [--precision auto|fp32|bf16|fp16] [--rows N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from polytask.api import build_config, train_run
from polytask.training import Callback

WARMUP = 3


class StepTimer(Callback):
    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.times: list[float] = []
        self.started = 0.0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def on_batch_begin(self, trainer: Any, step: int, batch: Any) -> None:
        self._sync()
        self.started = time.perf_counter()

    def on_batch_end(self, trainer: Any, step: int, batch: Any) -> None:
        self._sync()
        self.times.append(time.perf_counter() - self.started)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--rows", type=int, default=None, help="train on the first N rows only")
    a = ap.parse_args()
    config = Path(a.config).resolve()
    os.chdir(config.parent)  # the example's data paths are relative to its folder
    cfg = build_config(
        config, epochs=a.epochs, device=a.device, precision=a.precision, progress=False
    )
    data = None
    if a.rows is not None and cfg.data.path:
        from polytask.features.io import read_table

        data = read_table(cfg.data.path).iloc[: a.rows]
    cuda = torch.cuda.is_available() and a.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer(cuda)
    started = time.perf_counter()
    model = train_run(cfg, data, verbose=False, callbacks=[timer])
    wall = time.perf_counter() - started
    steps = timer.times[WARMUP:] or timer.times
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        where = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        where = "cpu"
    test = model.metrics.get("test") or model.metrics.get("validation") or {}
    first = next(iter(test.items()), ("-", {}))
    headline = ", ".join(f"{k} {v:.3f}" for k, v in first[1].items() if k != "n" and v is not None)
    print(
        f"| {config.parent.name}/{config.name} | {where} | {model.info['device']} "
        f"| {a.precision} | {len(timer.times)} | {1000 * statistics.median(steps):.1f} "
        f"| {peak:.0f} | {wall:.0f} | {first[0]}: {headline} |"
    )


if __name__ == "__main__":
    main()
