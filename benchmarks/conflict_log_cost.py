"""Whole train_run time with the gradient-cosine log off vs the default cadence (at least
4 measurements an epoch) on short epochs (issue 17, point 3).

    OMP_NUM_THREADS=1 PYTHONPATH=src:. python benchmarks/conflict_log_cost.py
"""

from __future__ import annotations

import statistics
import time

import torch

from polytask.api import build_config, train_run
from tests.conftest import make_table

TASKS = ["y_reg:regression", "y_bin:binary", "y_cls:multiclass"]


def seconds(df, log_every: int, method: str) -> float:  # type: ignore[no-untyped-def]
    cfg = build_config(
        None, TASKS, epochs=4, hidden=[64], batch_size=128, balancing=method, drop=["id"]
    )
    cfg.balancing.log_every = log_every
    cfg.training.patience = 100
    t0 = time.perf_counter()
    train_run(cfg, df, verbose=False)
    return time.perf_counter() - t0


def main() -> None:
    torch.set_num_threads(1)
    df = make_table(2000, seed=0)  # 1,400 training rows: 11 steps an epoch
    for method in ("ew", "pcgrad"):
        times: dict[int, list[float]] = {0: [], 100: []}
        for _ in range(3):
            for every in times:
                times[every].append(seconds(df, every, method))
        off, on = statistics.median(times[0]), statistics.median(times[100])
        print(f"{method}: log off {off:.2f}s, default {on:.2f}s, ratio {on / off:.2f}")


if __name__ == "__main__":
    main()
