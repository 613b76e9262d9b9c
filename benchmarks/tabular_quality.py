"""Tabular quality: polytask's defaults (and variants) next to per-task
HistGradientBoosting and a linear model, on public tables, on the same splits.

Every model sees the same train/validation/test split of each seed (70/15/15); polytask
picks its epoch on validation, the baselines train on the training split with their
library defaults, and every number in the table is the test split's, mean over the
seeds. Headline metric per task: AUROC (binary), accuracy (multiclass), R² (regression;
of log1p values where the task trains on a log scale). A variant is a dict merged into
the run config (``VARIANTS``). Run alone:

    python benchmarks/tabular_quality.py [--tables penguins,cars] [--seeds 3] [--first-seed 0]
        [--variants defaults,best] [--set training.lr=0.001 ...] [--json FILE] [--quick]

The default tables leave out ``flights`` (336k rows: about 5 minutes per polytask run
here); ask for it with ``--tables flights``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

#: torch's OpenMP threads spin after each op and starve scikit-learn's (a 0.3 s boosting
#: fit took 3-10 s after training); passive waiting gives the cores back
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))
from tabular_tables import TABLES, Table  # a script beside its loaders

from polytask.api import build_config, train_run
from polytask.evaluation.gbm_baseline import gbm_split_scores
from polytask.features.splits import split_frame
from polytask.values import is_text_dtype

#: polytask variants: overrides merged into the run config; "best" is the best measured
#: (periodic numeric encoding; cyclical columns are inferred in every variant)
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "best": {"model": {"numeric_encoding": "periodic"}},
    "piecewise": {"model": {"numeric_encoding": "piecewise"}},
    "periodic": {"model": {"numeric_encoding": "periodic"}},
    "standard": {"model": {"numeric_encoding": "standard"}},
    "periodic_narrow": {
        "model": {"numeric_encoding": "periodic", "numeric_encoding_options": {"width": 4}}
    },
    "periodic_sigma": {
        "model": {"numeric_encoding": "periodic", "numeric_encoding_options": {"sigma": 0.03}}
    },
    "resnet": {"model": {"trunk": "resnet"}},
    "tabm": {"model": {"trunk": "tabm"}},
}
#: how far below the better baseline still counts as level (issue 16)
TOLERANCE = {"auroc": 0.01, "accuracy": 0.02, "r2": 0.02, "r2_log": 0.02}
#: the quick mode (tests): a few epochs, the first seed only
QUICK_EPOCHS = 3


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tables", default=",".join(t for t in TABLES if t != "flights"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    ap.add_argument("--variants", default="defaults")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_EPOCHS} epochs, one seed")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    args.tables = [t for t in args.tables.split(",") if t]
    unknown = [t for t in args.tables if t not in TABLES]
    if unknown:
        ap.error(f"unknown table {unknown[0]}; known: {', '.join(TABLES)}")
    args.variants = [v for v in args.variants.split(",") if v]
    if args.quick:
        args.seeds = 1
    return args


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, nested mappings key by key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dotted(assignments: list[str]) -> dict[str, Any]:
    """``["training.lr=0.001"]`` -> ``{"training": {"lr": 0.001}}``."""
    out: dict[str, Any] = {}
    for a in assignments:
        key, value = a.split("=", 1)
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def run_config(table: Table, overrides: dict[str, Any], seed: int, quick: bool) -> Any:
    base = {"features": {"include": table.features}, "training": {"progress": False}}
    if quick:
        base["training"]["epochs"] = QUICK_EPOCHS
    return build_config(merge(base, overrides), table.tasks, seed=seed)


def headline(task: Any) -> str:
    if task.kind == "binary":
        return "auroc"
    if task.kind == "multiclass":
        return "accuracy"
    return "r2_log" if getattr(task, "log", False) else "r2"


def _design(table: Table, train: Any, frames: list[Any]) -> list[Any]:
    """One-hot categoricals, median-imputed standardised numerics (with indicators)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cats = [c for c in table.features if is_text_dtype(train[c].dtype)]
    nums = [c for c in table.features if c not in cats]
    onehot = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5)
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), nums),
            ("cat", make_pipeline(SimpleImputer(strategy="constant"), onehot), cats),
        ],
        sparse_threshold=1.0,
    )

    def x(f: Any) -> Any:
        return f[table.features].astype({c: object for c in cats})

    prep.fit(x(train))
    return [prep.transform(x(f)) for f in frames]


def linear_scores(
    table: Table, tasks: list[Any], train: Any, evaluate: dict[str, Any]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Ridge (regressions, on the task's own scaled target) or logistic regression per
    task on :func:`_design`'s features, scored as the boosting baseline is."""
    from sklearn.linear_model import LogisticRegression, Ridge

    names = list(evaluate)
    matrices = _design(table, train, [train, *evaluate.values()])
    out: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    for task in tasks:
        y, m = (v.numpy() for v in task.encode(task.labels_of(train)))
        classify = task.kind in ("binary", "multiclass")
        model = LogisticRegression(max_iter=2000) if classify else Ridge(alpha=1.0)
        model.fit(matrices[0][m], y[m].astype(int) if classify else y[m])
        for name, xe in zip(names, matrices[1:], strict=True):
            ye, me = (v.numpy() for v in task.encode(task.labels_of(evaluate[name])))
            ye = ye.astype(int) if classify else ye
            out[name][task.name] = task.baseline_scores(model, xe[me], ye[me])
    return out


def one_seed(table: Table, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Every model's validation and test scores and seconds on one split."""
    result: dict[str, Any] = {}
    tasks = None
    for variant in args.variants:
        overrides = merge(VARIANTS[variant], dotted(args.set))
        cfg = run_config(table, overrides, seed, args.quick)
        t0 = time.perf_counter()
        model = train_run(cfg, table.frame, verbose=False)
        t = model.config.training
        result[variant] = {
            "seconds": time.perf_counter() - t0,
            "test": model.metrics["test"],
            "validation": model.metrics["validation"],
            "chosen": {k: getattr(t, k) for k in ("batch_size", "lr", "epochs", "patience")},
            "epochs_run": model.info["epochs_run"],
        }
        tasks = model.tasks
    if args.no_baselines or tasks is None:
        return result
    d = cfg.data
    train, val, test = split_frame(table.frame, d.validation_fraction, d.test_fraction, seed)
    splits = {"validation": val, "test": test}
    t0 = time.perf_counter()
    hgb = gbm_split_scores(tasks, table.features, train, splits, seed)
    result["hgb"] = {"seconds": time.perf_counter() - t0, **hgb}
    t0 = time.perf_counter()
    lin = linear_scores(table, tasks, train, splits)
    result["linear"] = {"seconds": time.perf_counter() - t0, **lin}
    result["headline"] = {t.name: headline(t) for t in tasks}
    return result


def _value(v: float | None) -> float:
    return np.nan if v is None else float(v)


def summarise(name: str, runs: list[dict[str, Any]], split: str = "test") -> dict[str, Any]:
    """Per task: each model's mean headline metric, the margin of the first polytask
    variant over the better baseline, and whether that is within the tolerance."""
    heads = runs[0]["headline"]
    models = [m for m in runs[0] if m not in ("headline",)]
    rows = {}
    for task, metric in heads.items():
        means = {
            m: float(np.mean([_value(r[m][split][task][metric]) for r in runs])) for m in models
        }
        best_base = max(means["hgb"], means["linear"])
        first = next(m for m in models if m not in ("hgb", "linear"))
        margin = means[first] - best_base
        rows[task] = {
            "metric": metric,
            "means": means,
            "margin": margin,
            "within": margin >= -TOLERANCE[metric],
            "ahead": margin > 0,
        }
    seconds = {m: float(np.mean([r[m]["seconds"] for r in runs])) for m in models}
    return {"table": name, "tasks": rows, "seconds": seconds}


def markdown(summaries: list[dict[str, Any]]) -> str:
    models = [m for m in summaries[0]["seconds"]]
    head = "| table | task | metric | " + " | ".join(models) + " | margin | verdict |"
    lines = [head, "|" + "---|" * (len(models) + 5)]
    for s in summaries:
        for task, r in s["tasks"].items():
            vals = " | ".join(f"{r['means'][m]:.3f}" for m in models)
            verdict = "ahead" if r["ahead"] else ("within" if r["within"] else "**short**")
            lines.append(
                f"| {s['table']} | {task} | {r['metric']} | {vals} | {r['margin']:+.3f} | "
                f"{verdict} |"
            )
        secs = " | ".join(f"{s['seconds'][m]:.1f}s" for m in models)
        lines.append(f"| {s['table']} | *seconds per model* | | {secs} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    report: dict[str, Any] = {"args": vars(args), "tables": {}}
    summaries = []
    for name in args.tables:
        table = TABLES[name]()
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = [one_seed(table, args, seed) for seed in seeds]
        report["tables"][name] = runs
        if not args.no_baselines:
            summaries.append(summarise(name, runs))
            print(markdown(summaries[-1:]), flush=True)
    if summaries:
        print(f"\n{args.seeds} seeds, test split, variants {args.variants}, set {args.set}")
        print(markdown(summaries))
        report["summary"] = summaries
        report["validation_summary"] = [
            summarise(n, report["tables"][n], "validation") for n in args.tables
        ]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
