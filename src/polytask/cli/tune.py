"""``polytask tune``: train's inputs plus when to stop (--trials, --timeout), how many
processes share the study (--jobs) and where it lives (--out); thin over
:func:`polytask.tuning.tune`."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any

from polytask.errors import PolytaskError

INSTALL = "polytask tune needs Optuna; install it with pip install 'polytask[tune]'"


def add_tune(sub: Any) -> None:
    from polytask.cli.parser import _run_flags, add_config_flags

    t = sub.add_parser(
        "tune",
        help="search hyperparameters and balancing (Optuna); writes OUT/best.yaml",
        description="Search the balancing method and its options, the tuned weighted sum's "
        "per-task weights, architecture, widths, dropout, learning rate, weight decay and "
        "batch size (the config's tune: section overrides the space and the objective). "
        "The study lives in OUT/study.db: run the same command again to resume it; --jobs "
        "N processes share it. Writes OUT/best.yaml (polytask train --config trains it), "
        "OUT/trials.csv and OUT/report.html. " + INSTALL.replace("polytask tune needs", "Needs"),
    )
    _run_flags(t)
    t.add_argument("--out", metavar="DIR", help="the study's folder (required)")
    t.add_argument("--trials", type=int, metavar="N", help="stop when N trials have finished")
    t.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    t.add_argument("--jobs", type=int, default=1, metavar="N", help="processes (default 1)")
    t.add_argument("--overwrite", action="store_true", help="start the study in DIR again")
    add_config_flags(t)


def cmd_tune(a: argparse.Namespace) -> int:
    from polytask.cli import _train_config

    if not a.out:
        raise PolytaskError("tune needs --out DIR (where the study and best.yaml go)")
    if importlib.util.find_spec("optuna") is None:
        raise PolytaskError(INSTALL)
    cfg = _train_config(a)
    from polytask.tuning import tune

    result = tune(
        cfg, out=a.out, trials=a.trials, timeout=a.timeout, jobs=a.jobs, overwrite=a.overwrite
    )
    values = ", ".join(f"{v:.4g}" for v in result.best_values)
    print(f"{result.trials} trials; best on validation: {values}")
    print(f"wrote {result.out / 'best.yaml'}, trials.csv and report.html")
    print(
        f"next: polytask train --config {result.out / 'best.yaml'} --out RUN_DIR", file=sys.stderr
    )
    return 0
