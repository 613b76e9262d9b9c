"""Does sharing help? ``polytask compare`` on SUPPORT2, the MMoE synthetic tasks, the
Multi-Fashion images and the drug reviews.

For each data set: one single-task model per task and each multi-task variant (balancing
methods x architectures), over several seeds (seed s draws the split and the
initialisation), scored on test; the variant is chosen on validation (lowest validation
Δm). Prints and writes (``--out``, default runs/quality/) each comparison's files
(results.md/.csv/.json, report.html) and a summary table in Markdown (``summary.md``).

    python benchmarks/quality.py                       # about 10 minutes on 2 CPUs
    python benchmarks/quality.py --datasets synthetic --seeds 3 --methods ew,uw

Data sets:

* ``support2``: the demo's three tasks (in-hospital death, binary; length of stay,
  regression on log1p; functional outcome, 3 classes with 1,400 missing labels) from the
  27 admission features, the demo's model (hidden 256-128, dropout 0.3, early stopping on
  the validation loss);
* ``synthetic``: the two regression tasks of Ma et al. 2018 (MMoE), Sec. 3, with task
  correlation p (``--correlation``, default 0.5), ``--rows`` rows (default 10,000, 7,000
  to train: few enough that one task alone does not learn its function well), a smaller
  model (hidden 64-32, no dropout, at most 60 epochs).

* ``fashion``: ``examples/fashion``'s model on ``--fashion-rows`` Multi-Fashion training
  images (built from Debian's dataset-fashion-mnist), ``--fashion-epochs`` epochs;
* ``reviews``: ``examples/reviews``'s model (a small transformer text encoder).

MMoE runs with 4 experts of one 64-wide layer (``ARCHITECTURE_OPTIONS``), near the size
of the hard-sharing trunk.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.api import build_config
from polytask.compare import compare, make_spec
from polytask.datasets import SUPPORT2_FEATURES, SUPPORT2_TASKS, load_support2
from polytask.datasets.synthetic import MMOE_TASKS, mmoe_synthetic
from polytask.evaluation.summary import Comparison
from polytask.evaluation.terminal import print_table
from polytask.features.io import read_table
from polytask.metrics.delta_m import FORMULA


def _support2(args: argparse.Namespace) -> tuple[Any, Any, str]:
    cfg = build_config(
        {"features": {"include": SUPPORT2_FEATURES}},
        SUPPORT2_TASKS,
        epochs=args.epochs,
        progress=False,
    )
    return cfg, load_support2(), "SUPPORT2 (9,105 patients; hospdead, slos, sfdm2)"


def _synthetic(args: argparse.Namespace) -> tuple[Any, Any, str]:
    df = mmoe_synthetic(args.rows, args.correlation, seed=args.data_seed)
    cfg = build_config(
        None,
        MMOE_TASKS,
        epochs=args.synthetic_epochs,
        hidden=args.synthetic_hidden,
        dropout=0.0,
        progress=False,
    )
    what = f"MMoE synthetic, p = {args.correlation}, {args.rows:,} rows, d = 100"
    return cfg, df, what


def _example_config(name: str, data: dict[str, str], **training: Any) -> Any:
    from polytask.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "examples" / name / "config.yaml").to_dict()
    cfg["data"].update(data)
    cfg["training"].update(progress=False, **training)
    return build_config(cfg)


def _fashion(args: argparse.Namespace) -> tuple[Any, Any, str]:
    from polytask.datasets.multi_fashion import build

    folder = Path(args.out) / "data" / "fashion"
    if not (folder / "test.npz").is_file():
        build(folder, n_train=args.fashion_rows, n_test=2000)
    cfg = _example_config(
        "fashion", {"path": None, "test": str(folder / "test.npz")}, epochs=args.fashion_epochs
    )
    what = f"Multi-Fashion ({args.fashion_rows:,} training images; left, right, mask, left_visible)"
    return cfg, read_table(folder / "train.npz"), what


def _reviews(args: argparse.Namespace) -> tuple[Any, Any, str]:
    from polytask.datasets.drug_reviews import prepare

    folder = Path(args.out) / "data" / "reviews"
    if not (folder / "test.csv").is_file():
        prepare(folder)
    cfg = _example_config("reviews", {"path": None, "test": str(folder / "test.csv")})
    what = "drug reviews (600 train, 379 test; rating, condition, usefulCount)"
    return cfg, read_table(folder / "train.csv"), what


DATASETS = {
    "support2": _support2,
    "synthetic": _synthetic,
    "fashion": _fashion,
    "reviews": _reviews,
}

#: MMoE at a size near the hard-sharing trunk's (its default, 8 experts of model.hidden,
#: is 8 times the trunk): 4 experts of one 64-wide layer
ARCHITECTURE_OPTIONS = {"mmoe": {"experts": 4, "expert_hidden": [64]}}


def _summary_rows(c: Comparison) -> list[str]:
    lines = []
    for r in c.rows[1:]:
        dm = "-" if r.delta_m is None else f"{r.delta_m:+.2f}"
        sd = "" if r.delta_m_std is None else f" ± {r.delta_m_std:.2f}"
        val = "-" if r.delta_m_validation is None else f"{r.delta_m_validation:+.2f}"
        mark = " (chosen)" if r.name == c.chosen else ""
        rank = "-" if r.mean_rank is None else f"{r.mean_rank:.2f}"
        lines.append(f"| {r.name}{mark} | {dm}{sd} | {val} | {rank} | {r.seconds_per_epoch:.3f} |")
    return lines


def _training_minutes(out: Path, c: Comparison) -> float:
    """Training time of the comparison's finished runs (whenever they ran)."""
    total = 0.0
    for path in (out / "runs").glob("*/seed-*.json"):
        r = json.loads(path.read_text(encoding="utf-8"))
        if r.get("status") == "ok" and r.get("seed") in c.seeds:
            total += float(r.get("train_seconds") or 0.0)
    return total / 60


def _markdown(name: str, what: str, c: Comparison, seconds: float, minutes: float) -> str:
    out = [f"### {name}: {what}", ""]
    out += ["| variant | Δm% test (± std over seeds) | Δm% validation | mean rank | s/epoch |"]
    out += ["| --- | ---: | ---: | ---: | ---: |"]
    out += _summary_rows(c)
    chosen = c.row(c.chosen) if c.chosen else None
    out.append("")
    if chosen is not None and chosen.delta_m is not None:
        verdict = "below 0: better than single-task" if chosen.delta_m < 0 else "not below 0"
        out.append(
            f"Chosen on validation: **{c.chosen}**, test Δm = {chosen.delta_m:+.2f}% ({verdict})."
        )
    for v in c.verdicts:
        p = "-" if v.p_value is None else f"{v.p_value:.3f}"
        out.append(
            f"- {v.task}.{v.metric}: single-task {v.stl_mean:.4f} ± {v.stl_std:.4f}, "
            f"multi-task {v.mtl_mean:.4f} ± {v.mtl_std:.4f}, p = {p}: {v.label}"
        )
    affinity = c.affinity.to_dict() if c.affinity else None
    conflict = c.conflict.to_dict() if c.conflict else None
    if affinity:
        names = affinity["tasks"]
        z = np.array([[np.nan if x is None else x for x in row] for row in affinity["matrix"]])
        pairs = [
            f"{a}→{b} {z[i, j]:+.2e}"
            for i, a in enumerate(names)
            for j, b in enumerate(names)
            if i != j
        ]
        share = affinity.get("share")
        cost = f"{share * 100:.1f}% of training time" if share is not None else "n/a"
        strength = affinity.get("strength")
        rel = "" if strength is None else f"; largest between tasks {strength * 100:.1f}% of self"
        out.append(f"- affinity ({affinity['variant']}; cost {cost}{rel}): " + ", ".join(pairs))
        for g in c.affinity.groupings[1:2] if c.affinity else []:
            out.append(f"- best split into 2 models: {g.describe()}")
    if conflict:
        out.append(
            "- gradient cosine: "
            + ", ".join(
                f"{p['pair'].replace('~', '/')} {p['mean']:+.3f}" for p in conflict["pairs"]
            )
        )
    out.append(
        f"- training time of all runs: {minutes:.1f} min; this invocation: {seconds / 60:.1f} min"
    )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", default="support2,synthetic")
    ap.add_argument("--methods", default="ew,uw,famo,upgrad")
    ap.add_argument("--architectures", default="hard,mmoe")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=100, help="SUPPORT2: maximum epochs")
    ap.add_argument("--synthetic-epochs", type=int, default=60, help="synthetic: maximum epochs")
    ap.add_argument("--rows", type=int, default=10000, help="synthetic rows")
    ap.add_argument("--correlation", type=float, default=0.5, help="synthetic task correlation")
    ap.add_argument("--data-seed", type=int, default=0, help="synthetic tasks' seed")
    ap.add_argument(
        "--synthetic-hidden",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[64, 32],
        help="synthetic model widths",
    )
    ap.add_argument("--fashion-rows", type=int, default=4000, help="Multi-Fashion train rows")
    ap.add_argument("--fashion-epochs", type=int, default=4, help="Multi-Fashion epochs")
    ap.add_argument("--affinity-every", type=int, default=10)
    ap.add_argument("--out", default="runs/quality")
    ap.add_argument("--overwrite", action="store_true", help="redo runs whose config changed")
    args = ap.parse_args()
    # small models: one thread is faster than two on a busy 2-core machine
    torch.set_num_threads(1)

    out = Path(args.out)
    parts = []
    for name in args.datasets.split(","):
        cfg, df, what = DATASETS[name](args)
        spec = make_spec(
            cfg,
            args.methods.split(","),
            args.architectures.split(","),
            args.seeds,
            args.affinity_every,
            {a: o for a, o in ARCHITECTURE_OPTIONS.items() if a in args.architectures.split(",")},
        )
        t0 = time.perf_counter()
        c = compare(
            spec,
            out / name,
            df,
            overwrite=args.overwrite,
            progress=lambda msg: print(msg, flush=True),
        )
        seconds = time.perf_counter() - t0
        print_table(c)
        parts.append(_markdown(name, what, c, seconds, _training_minutes(out / name, c)))
        with open(out / name / "benchmark.json", "w", encoding="utf-8") as f:
            json.dump({"what": what, "seconds": seconds, "args": vars(args)}, f, indent=2)
    summary = "\n".join([f"{FORMULA}.\n", *parts])
    (out / "summary.md").write_text(summary, encoding="utf-8")
    print(summary)


if __name__ == "__main__":
    main()
