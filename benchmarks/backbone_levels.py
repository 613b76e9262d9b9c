"""Cost of gradient balancing on a ResNet backbone, parameter level next to representation.

ResNet-34 (21.3M parameters, the issue's "22M-parameter backbone"), random start, the
FPN map shared by three tasks (multiclass, segmentation, regression) on 64 x 64 grey
images, batch 16. For each (method, level): milliseconds per full training step
(forward, task Jacobian, balancing, AdamW step) and the process's peak resident memory,
each configuration in its own process (so peaks don't mix), rounds interleaved. Run alone:

    python benchmarks/backbone_levels.py [--backbone resnet34] [--steps 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import pandas as pd

CONFIGS = [
    ("ew", "parameters"),
    ("upgrad", "representation"),
    ("upgrad", "parameters"),
    ("mgda", "parameters"),
]


def _frame(n: int, size: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    images = rng.random((n, size, size)).astype(np.float32)
    return pd.DataFrame(
        {
            "image": list(images),
            "cls": rng.integers(0, 5, n),
            "mask": list((images > 0.5).astype(np.int64)),
            "score": rng.random(n),
        }
    )


def child(backbone: str, method: str, level: str, steps: int, size: int, batch: int) -> dict:
    import torch

    from polytask.api import build_config
    from polytask.balancing import get
    from polytask.features.batches import Batch
    from polytask.model import build_net, build_tasks
    from polytask.prepare import prepare_single
    from polytask.training.steps import make_step

    torch.manual_seed(0)
    cfg = build_config(
        {
            "model": {"image": {"backbone": backbone, "pretrained": False}, "hidden": []},
            "features": {"include": ["image"]},
            "balancing": {"method": method, "jacobian": level},
        },
        ["cls:multiclass", "mask:segmentation", "score:regression"],
    )
    tasks = build_tasks(cfg)
    df = _frame(batch * 8, size)
    prepared = prepare_single(cfg, tasks, df, None, None)
    net = build_net(cfg, prepared.preprocessors, tasks).train()
    table = prepared.tables["train"]
    assert table is not None
    rows = slice(0, batch)
    b = Batch(
        table.features.numeric[rows],
        table.features.categorical[rows],
        [t[rows] for t in table.targets],
        [None if m is None else m[rows] for m in table.masks],
        tuple(x[rows] for x in table.features.extra.values()),
    )
    balancer = get(method)
    balancer.setup([t.name for t in tasks])
    step = make_step(net, tasks, balancer, level)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        for p in net.parameters():
            p.grad = None
        step(b)
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in net.encoder.conv.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms": 1000 * statistics.median(times), "peak_mib": peak, "params": params}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet34")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    if a.child:
        out = child(a.backbone, a.child[0], a.child[1], a.steps, a.size, a.batch)
        print(json.dumps(out))
        return
    results: dict[tuple[str, str], list[dict]] = {c: [] for c in CONFIGS}
    for _ in range(a.rounds):
        for method, level in CONFIGS:
            argv = [sys.executable, __file__, "--backbone", a.backbone, "--steps", str(a.steps)]
            argv += ["--size", str(a.size), "--batch", str(a.batch), "--child", method, level]
            line = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            results[(method, level)].append(json.loads(line.strip().splitlines()[-1]))
    base = statistics.median(r["ms"] for r in results[("ew", "parameters")])
    first = results[CONFIGS[0]][0]
    print(f"{a.backbone}: {first['params'] / 1e6:.1f}M backbone parameters, batch {a.batch}")
    print("| method | level | ms/step | x ew | peak RSS MiB |")
    print("|---|---|---:|---:|---:|")
    for (method, level), rs in results.items():
        ms = statistics.median(r["ms"] for r in rs)
        peak = max(r["peak_mib"] for r in rs)
        lvl = "-" if method == "ew" else level
        print(f"| {method} | {lvl} | {ms:.0f} | {ms / base:.2f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
