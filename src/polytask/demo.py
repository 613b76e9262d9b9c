"""``polytask demo``: one multi-task model on SUPPORT2, next to a gradient-boosting baseline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from polytask.api import build_config, train_run
from polytask.datasets import SUPPORT2_FEATURES, SUPPORT2_TASKS, load_support2
from polytask.features.splits import split_frame


def demo_config(epochs: int | None = None, seed: int = 0) -> Any:
    return build_config(
        {"features": {"include": SUPPORT2_FEATURES}},
        SUPPORT2_TASKS,
        epochs=epochs,
        seed=seed,
    )


def _default_out() -> Path:
    base = Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def run_demo(
    out: str | Path | None = None,
    epochs: int | None = None,
    seed: int = 0,
    baseline: bool = True,
    overwrite: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    console = Console()
    cfg = demo_config(epochs, seed)
    out_path = Path(out) if out else _default_out()
    df = load_support2()
    console.print(
        f"[bold]SUPPORT2[/]: {len(df):,} patients, {len(SUPPORT2_FEATURES)} features known at "
        "study entry; tasks: in-hospital death (binary), length of stay (regression, log "
        "scale), functional outcome (multiclass, 1,400 unlabelled)"
    )
    t0 = time.perf_counter()
    model = train_run(cfg, df, out=out_path, overwrite=overwrite, verbose=verbose)
    seconds = time.perf_counter() - t0
    test = model.metrics["test"]
    gbm: dict[str, dict[str, Any]] = {}
    if baseline:
        from polytask.evaluation.gbm_baseline import gbm_scores

        d = cfg.data
        train, _, test_df = split_frame(df, d.validation_fraction, d.test_fraction, seed)
        assert test_df is not None  # the demo draws a test split
        gbm = gbm_scores(model.tasks, SUPPORT2_FEATURES, train, test_df, seed)

    table = Table(title=f"SUPPORT2 test split ({test['hospdead']['n']} patients, seed {seed})")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("polytask (one model)", justify="right")
    if baseline:
        table.add_column("HistGradientBoosting (one per task)", justify="right")
    table.add_column("labelled", justify="right")
    shown = {
        "hospdead": ["auroc", "accuracy", "log_loss"],
        "slos": ["r2_log", "mae"],
        "sfdm2": ["accuracy", "macro_f1"],
    }
    for task, metrics in shown.items():
        for i, m in enumerate(metrics):
            v = test[task].get(m)
            row = [task if i == 0 else "", m, "-" if v is None else f"{v:.3f}"]
            if baseline:
                b = gbm.get(task, {}).get(m)
                row.append("-" if b is None else f"{b:.3f}")
            row.append(str(test[task]["n"]) if i == 0 else "")
            table.add_row(*row)
    console.print(table)
    info = model.info
    console.print(
        f"trained {info['epochs_run']} epochs in {seconds:.1f}s (best epoch "
        f"{info['best_epoch']}); run saved to [bold]{out_path}[/]"
    )
    return {"test": test, "baseline": gbm, "seconds": seconds, "out": str(out_path)}
