"""SUPPORT2 quality: polytask's demo model vs HistGradientBoosting on the same splits.

Mean (and std) over several seeds of the train/validation/test split; polytask picks its
best epoch on validation and is scored on test. Run alone:

    python benchmarks/support2_quality.py [--seeds 5] [--set model.dropout=0.2 ...]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import yaml

from polytask.api import train_run
from polytask.datasets import SUPPORT2_FEATURES, load_support2
from polytask.demo import demo_config
from polytask.evaluation.gbm_baseline import gbm_scores
from polytask.features.splits import split_frame

SHOWN = [("hospdead", "auroc"), ("slos", "r2_log"), ("slos", "mae"), ("sfdm2", "accuracy")]


def _apply(cfg_dict: dict[str, Any], assignment: str) -> None:
    key, value = assignment.split("=", 1)
    node = cfg_dict
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = yaml.safe_load(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. model.dropout=0.2",
    )
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()

    df = load_support2()
    rows: dict[str, list[dict[str, Any]]] = {"polytask": [], "gbm": []}
    seconds = []
    for seed in range(args.seeds):
        base = demo_config(seed=seed).to_dict()
        for s in args.set:
            _apply(base, s)
        from polytask.config import parse_config

        cfg = parse_config(base)
        t0 = time.perf_counter()
        model = train_run(cfg, df, verbose=False)
        seconds.append(time.perf_counter() - t0)
        rows["polytask"].append(model.metrics["test"])
        if not args.no_baseline:
            d = cfg.data
            train, _, test = split_frame(df, d.validation_fraction, d.test_fraction, seed)
            rows["gbm"].append(gbm_scores(model.tasks, SUPPORT2_FEATURES, train, test, seed))

    print(
        f"SUPPORT2, {args.seeds} seeds of the split, test metrics (mean ± std); "
        f"overrides: {args.set or 'none'}"
    )
    print(f"{'task.metric':<18}{'polytask':>18}{'HistGradientBoosting':>24}")
    summary: dict[str, Any] = {}
    for task, metric in SHOWN:
        vals = np.array([r[task][metric] for r in rows["polytask"]], dtype=float)
        line = f"{task + '.' + metric:<18}{vals.mean():>11.4f} ± {vals.std():.4f}"
        summary[f"{task}.{metric}"] = {"polytask": [float(v) for v in vals]}
        if rows["gbm"]:
            g = np.array([r[task].get(metric, np.nan) for r in rows["gbm"]], dtype=float)
            line += f"{g.mean():>17.4f} ± {g.std():.4f}"
            summary[f"{task}.{metric}"]["gbm"] = [float(v) for v in g]
        print(line)
    print(f"polytask training time per seed: {np.mean(seconds):.1f}s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"seeds": args.seeds, "overrides": args.set, "results": summary}, f, indent=2)


if __name__ == "__main__":
    main()
