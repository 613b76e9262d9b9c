"""Python function calls per training step: the part of a step's cost that code changes
move and machine noise does not.

On a loaded 2-core machine a millisecond timing moves 10-50% between processes; the
number of Python calls a step makes is exact and repeats to the call. For CPU steps
this small (tens of microseconds of Python around milliseconds of kernels), a change in
polytask's own overhead shows up here first. Two parts, each a table row per case:

- ``T = 20``: one step of ``benchmarks/step_cost.py``'s runner (the same network,
  tasks and batch), for each listed method at each Jacobian level;
- ``trainer``: ``polytask.fit`` for one epoch over 8,000 rows at batch 32 and 256,
  calls per training batch (the whole fit, set-up included, over the batch count).

Compare two checkouts with ``benchmarks/versus.py`` (copy this file into the other
checkout's ``benchmarks/`` if it predates it; it uses only APIs both have). Run alone:

    python benchmarks/call_counts.py [--methods ew,mean,db_mtl,dualproj,pcgrad]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import step_cost  # this folder's benchmark, whichever checkout it is in

LEVELS = {"rep": "representation", "par": "parameters"}


def calls(run, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Python calls per ``run()`` (after three warm-up calls), averaged over ``repeats``."""
    for _ in range(3):
        run()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(repeats):
        run()
    profile.disable()
    return pstats.Stats(profile).total_calls / repeats  # type: ignore[attr-defined]


def step_rows(methods: list[str], tasks: int) -> None:
    print(f"T = {tasks}")
    for name in methods:
        for short, level in LEVELS.items():
            run = step_cost.make_runner(name, tasks, level)
            print(f"  {name}@{short:<12} {calls(run, 10):10.0f}")


def trainer_rows(rows: int = 8000) -> None:
    import polytask

    rng = np.random.default_rng(0)
    df = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(10)})
    df["c"] = rng.choice(list("abcdef"), rows)
    df["a"] = df.x0 + rng.normal(size=rows) * 0.1
    df["b"] = (df.x1 > 0).astype(int)
    print("trainer")
    for batch in (32, 256):
        kw = {"tasks": ["a:regression", "b:binary"], "epochs": 1, "hidden": [64]}
        kw |= {"batch_size": batch, "verbose": False, "seed": 0}
        per_fit = calls(lambda kw=kw: polytask.fit(df, **kw), 1)
        batches = int(rows * 0.7) // batch  # the default 70% training split
        print(f"  fit, calls per batch at batch={batch:<5} {per_fit / batches:10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="ew,mean,db_mtl,dualproj,pcgrad,nash_mtl")
    ap.add_argument("--tasks", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    step_rows(args.methods.split(","), args.tasks)
    trainer_rows()


if __name__ == "__main__":
    main()
