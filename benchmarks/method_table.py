"""Every balancing method on Multi-Fashion and the competing-tasks problem: the table the
balancing papers print (per-task test metrics, Δm against single-task models, mean rank,
seconds per epoch, peak memory).

The methods come from the registry (``polytask.balancing.METHODS``), so a method added
there appears here without a change. Each data set is one ``polytask compare`` (single-task
baselines plus every method with hard sharing, over seeds; runs are kept and reused under
``--out``); peak memory is measured apart, one fresh process per method training one
epoch on ``--probe-rows`` rows (on CPU: its peak resident set above the set before
training; on CUDA: ``torch.cuda.max_memory_allocated``).

    python benchmarks/method_table.py                   # 3 seeds, every method, full size
    python benchmarks/method_table.py --quick           # 1 seed, small data, few epochs
    python benchmarks/method_table.py --datasets competing --methods ew,uw,upgrad --seeds 3

Data sets:

* ``fashion``: ``examples/fashion``'s model (conv backbone 16-32-64, four tasks: two
  classes, a mask, a regression) on ``--fashion-rows`` Multi-Fashion training images;
* ``competing``: ``competing_tasks``, two regression tasks on a 3-unit shared layer, one
  100 times larger than the other (the balancing tests' problem): equal weighting starves
  the small task, and the balancing methods are there to rescue it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import polytask
from polytask.api import build_config
from polytask.balancing import METHODS
from polytask.compare import compare, make_spec
from polytask.config import RunConfig
from polytask.datasets.synthetic import COMPETING_TASKS, competing_tasks
from polytask.evaluation.summary import Comparison, Row
from polytask.features.io import read_table
from polytask.io import write_text
from polytask.metrics.delta_m import FORMULA

#: The tuned static weights of the tuning issue, per data set ({task: weight}). When that
#: issue lands, its tuned weights go here and the table gains the row "weights (hard)".
TUNED_WEIGHTS: dict[str, dict[str, float]] = {}
#: registered methods that cannot run on their defaults (static weights need the weights:
#: they run only where TUNED_WEIGHTS has them)
NEEDS_OPTIONS = {"weights"}

#: (full, --quick) sizes
SIZES = {
    "fashion_rows": (4000, 400),
    "fashion_test": (2000, 400),
    "fashion_epochs": (4, 1),
    "competing_rows": (3000, 1000),
    "competing_epochs": (100, 15),
    "seeds": (3, 1),
    "probe_rows": (512, 256),
}


def _fashion(args: argparse.Namespace) -> tuple[RunConfig, Any, str]:
    from polytask.config import load_config
    from polytask.datasets.multi_fashion import build

    folder = Path(args.out) / "data" / f"fashion-{args.fashion_rows}-{args.fashion_test}"
    if not (folder / "test.npz").is_file():
        build(folder, n_train=args.fashion_rows, n_test=args.fashion_test)
    example = Path(__file__).parents[1] / "examples" / "fashion" / "config.yaml"
    cfg = load_config(example).to_dict()
    cfg["data"].update(path=None, test=str(folder / "test.npz"))
    cfg["training"].update(progress=False, epochs=args.fashion_epochs)
    what = f"Multi-Fashion, {args.fashion_rows:,} training images, {args.fashion_epochs} epochs"
    return build_config(cfg), read_table(folder / "train.npz"), what


def _competing(args: argparse.Namespace) -> tuple[RunConfig, Any, str]:
    cfg = build_config(
        None,
        COMPETING_TASKS,
        hidden=[64, 3],
        head_hidden=[32],
        dropout=0.0,
        norm="none",
        epochs=args.competing_epochs,
        patience=None,
        lr=3e-3,
        weight_decay=0.0,
        batch_size=32,
        progress=False,
    )
    rows, epochs = args.competing_rows, args.competing_epochs
    what = f"competing tasks (b = 100 x a), {rows:,} rows, {epochs} epochs"
    return cfg, competing_tasks(args.competing_rows, seed=0), what


DATASETS = {"fashion": _fashion, "competing": _competing}


def methods_of(args: argparse.Namespace, dataset: str) -> list[str]:
    """The methods to run: ``--methods`` or every registered one that runs on its defaults,
    plus the tuned static weights where they exist."""
    chosen = (
        args.methods.split(",") if args.methods else [m for m in METHODS if m not in NEEDS_OPTIONS]
    )
    if dataset in TUNED_WEIGHTS and "weights" not in chosen:
        chosen.append("weights")
    return chosen


def with_weights(cfg: RunConfig, dataset: str) -> RunConfig:
    """The base config carries the tuned weights, so the "weights" variant uses them."""
    if dataset not in TUNED_WEIGHTS:
        return cfg
    data = cfg.to_dict()
    data["balancing"] = {"method": "weights", "weights": TUNED_WEIGHTS[dataset]}
    return build_config(data)


def probe_memory(args: argparse.Namespace, dataset: str, method: str) -> None:
    """In a fresh process: train one epoch with ``method``; print its peak memory (JSON)."""
    cfg, df, _ = DATASETS[dataset](args)
    cfg = with_weights(cfg, dataset)
    data = cfg.to_dict()
    if data["balancing"]["method"] != method:
        data["balancing"] = {"method": method}
    data["training"].update(epochs=1, patience=None)
    cuda = torch.cuda.is_available()
    before = _rss_mib()
    polytask.fit(df.iloc[: args.probe_rows], config=build_config(data))
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mib() - before
    print(json.dumps({"method": method, "peak_mib": peak, "cuda": cuda}))


def _status_mib(field: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float:
    return _status_mib("VmRSS:")


def _peak_rss_mib() -> float:
    return _status_mib("VmHWM:")


def peak_memory(args: argparse.Namespace, dataset: str, methods: list[str]) -> dict[str, float]:
    """Each method's probe in its own process (a process's peak only ever grows)."""
    out = {}
    for m in methods:
        cmd = [sys.executable, __file__, "--probe", dataset, m, *_size_flags(args)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = res.stdout.strip().splitlines()
        out[m] = (
            json.loads(lines[-1])["peak_mib"] if res.returncode == 0 and lines else float("nan")
        )
    return out


def _size_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--out", args.out]
    for key in SIZES:
        flags += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    return flags


def _cell(row: Row, task: str, metric: str) -> str:
    stats = row.test.get(task, {}).get(metric)
    if not stats or stats.get("mean") is None:
        return "-"
    sd = stats.get("std")
    return f"{stats['mean']:.4f}" + ("" if sd is None else f" ± {sd:.4f}")


def markdown(name: str, what: str, c: Comparison, memory: dict[str, float]) -> str:
    """One data set's table: a row per method (single-task first), per-task headline metrics."""
    cols = [(t, m, up) for t, ms in c.headline.items() for m, up in ms.items()]
    head = [f"{t}.{m} {'↑' if up else '↓'}" for t, m, up in cols]
    out = [f"### {name}: {what}", ""]
    out.append("| method | " + " | ".join(head) + " | Δm% | mean rank | s/epoch | peak MiB |")
    out.append("| --- | " + " | ".join("---:" for _ in cols) + " | ---: | ---: | ---: | ---: |")
    ew = memory.get("ew")
    for r in c.rows:
        cells = [_cell(r, t, m) for t, m, _ in cols]
        dm = "0" if r.kind == "single" else ("-" if r.delta_m is None else f"{r.delta_m:+.2f}")
        if r.delta_m_std is not None and r.kind != "single":
            dm += f" ± {r.delta_m_std:.2f}"
        rank = "-" if r.mean_rank is None else f"{r.mean_rank:.2f}"
        sec = "-" if r.seconds_per_epoch is None else f"{r.seconds_per_epoch:.3f}"
        mem = memory.get(r.method or "") if r.kind == "multi" else None
        mib = "-" if mem is None else f"{mem:.0f}" + (f" ({mem / ew:.2f}x ew)" if ew else "")
        label = "single-task models" if r.kind == "single" else (r.method or r.name)
        out.append(f"| {label} | " + " | ".join(cells) + f" | {dm} | {rank} | {sec} | {mib} |")
    if name not in TUNED_WEIGHTS:
        out.append("| weights (tuned, from the tuning issue) | not yet: TUNED_WEIGHTS is empty |")
    return "\n".join(out) + "\n"


def _say(dataset: str) -> Callable[[str], None]:
    return lambda msg: print(f"{dataset} {msg}", flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", default="competing,fashion")
    ap.add_argument("--methods", default="", help="comma-separated (default: the registry)")
    ap.add_argument("--quick", action="store_true", help="the smaller sizes (see SIZES)")
    for key, (full, _) in SIZES.items():
        ap.add_argument(
            f"--{key.replace('_', '-')}", type=int, default=None, help=f"default {full}"
        )
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    ap.add_argument("--out", default="runs/method_table")
    ap.add_argument("--probe", nargs=2, metavar=("DATASET", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for key, (full, quick) in SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    return args


def main() -> None:
    args = parse()
    torch.set_num_threads(1)  # small models on a shared machine: one thread per process
    if args.probe:
        probe_memory(args, *args.probe)
        return
    parts = []
    for name in args.datasets.split(","):
        cfg, df, what = DATASETS[name](args)
        methods = methods_of(args, name)
        spec = make_spec(with_weights(cfg, name), methods, ["hard"], args.seeds, 0)
        t0 = time.perf_counter()
        c = compare(spec, Path(args.out) / name, df, progress=_say(name), report=False)
        memory = {} if args.no_memory else peak_memory(args, name, methods)
        minutes = (time.perf_counter() - t0) / 60
        parts.append(markdown(name, what, c, memory) + f"\n({minutes:.1f} min)\n")
    text = f"{FORMULA}.\n\n" + "\n".join(parts)
    write_text(Path(args.out) / "table.md", text)
    print(text)


if __name__ == "__main__":
    main()
