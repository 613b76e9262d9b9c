"""MMoE, CGC and PLE against hard sharing as the tasks' correlation falls (Ma et al. 2018,
Sec. 3 and Fig. 4; Tang et al. 2020, Sec. 5.1).

For each task correlation p: the two regression tasks of ``mmoe_synthetic`` (weight
vectors at cosine p, ten shared sinusoids, 100 inputs), one single-task model per task and
each architecture, all with equal weighting and the architectures' defaults, over seeds
(seed s draws the 70/15/15 split and the initialisation). Prints a Markdown table of test
Δm (mean ± std over seeds) per architecture and p, and writes it to ``--out``/table.md.
Runs are kept and reused (``polytask compare`` folders under ``--out``/p=P), so two
invocations with different ``--correlations`` can share the machine's cores.

    python benchmarks/correlation.py                        # p 1.0, 0.9, 0.5, 0.0; 3 seeds
    python benchmarks/correlation.py --correlations 0.5 --seeds 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from polytask.api import build_config
from polytask.compare import compare, make_spec
from polytask.datasets.synthetic import MMOE_TASKS, mmoe_synthetic
from polytask.evaluation.summary import Comparison
from polytask.io import write_text
from polytask.metrics.delta_m import FORMULA


def run_p(args: argparse.Namespace, p: float) -> Comparison:
    """One correlation: the comparison of every architecture with the single-task models."""
    df = mmoe_synthetic(args.rows, p, seed=args.data_seed)
    cfg = build_config(
        None,
        MMOE_TASKS,
        epochs=args.epochs,
        hidden=args.hidden,
        head_hidden=args.head_hidden,
        dropout=0.0,
        progress=False,
    )
    spec = make_spec(cfg, ["ew"], args.architectures.split(","), args.seeds, 0)
    say = (lambda msg: print(f"p = {p}: {msg}", flush=True)) if args.verbose else None
    return compare(spec, Path(args.out) / f"p={p}", df, progress=say, report=False)


def table(results: dict[float, Comparison], architectures: list[str]) -> str:
    """Δm% per architecture (rows) and correlation (columns), with parameter counts."""
    ps = list(results)
    lines = ["| architecture | params | " + " | ".join(f"Δm% p = {p}" for p in ps) + " |"]
    lines.append("| --- | ---: | " + " | ".join("---:" for _ in ps) + " |")
    for arch in architectures:
        cells, params = [], None
        for p in ps:
            row = next(r for r in results[p].rows if r.architecture == arch and r.kind == "multi")
            params = row.params
            dm = "-" if row.delta_m is None else f"{row.delta_m:+.2f}"
            sd = "" if row.delta_m_std is None else f" ± {row.delta_m_std:.2f}"
            cells.append(dm + sd)
        lines.append(f"| {arch} | {params:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--correlations", default="1.0,0.9,0.5,0.0")
    ap.add_argument("--architectures", default="hard,mmoe,cgc,ple")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--data-seed", type=int, default=0, help="the tasks' seed")
    ap.add_argument("--hidden", type=lambda s: [int(x) for x in s.split(",")], default=[64, 32])
    ap.add_argument(
        "--head-hidden",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[],
        help="each task's tower (the papers: one layer of 8)",
    )
    ap.add_argument("--out", default="runs/correlation")
    ap.add_argument("--verbose", action="store_true", help="one line per finished run")
    args = ap.parse_args()
    torch.set_num_threads(1)  # small models: one thread each on a shared machine
    archs = args.architectures.split(",")
    results = {float(p): run_p(args, float(p)) for p in args.correlations.split(",")}
    text = f"{FORMULA}.\n\n" + table(results, archs)
    write_text(Path(args.out) / "table.md", text)
    print(text)


if __name__ == "__main__":
    main()
