"""Running a comparison: single-task baselines and multi-task variants over seeds.

This is the part of a comparison that trains, so it sits beside :mod:`polytask.api`
(above evaluation): what is compared and where its files go is
:mod:`polytask.evaluation.layout`, the summary :mod:`polytask.evaluation.summary`, the
renderers :mod:`polytask.evaluation.tables`, :mod:`polytask.evaluation.terminal` and
:mod:`polytask.evaluation.report`, all below it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from polytask import api
from polytask.analysis.affinity import TaskAffinity
from polytask.config import RunConfig
from polytask.errors import PolytaskError
from polytask.evaluation.layout import (
    SPEC,
    CompareSpec,
    Variant,
    check_out,
    is_done,
    make_spec,
    read_result,
    result_path,
    run_path,
    variant_config,
)
from polytask.evaluation.report import write_report
from polytask.evaluation.summary import Comparison, summarise_comparison
from polytask.evaluation.tables import write_results
from polytask.io import write_json as write_json_atomic
from polytask.prepare import read_frames

__all__ = ["CompareSpec", "Variant", "compare", "make_spec", "run_comparison"]

Progress = Callable[[str], None]
Frames = tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None]


def run_comparison(
    spec: CompareSpec,
    out: str | Path,
    data: pd.DataFrame | None = None,
    validation: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Train every variant over every seed (seed by seed), skipping finished runs; returns
    the result records (finished, skipped and failed)."""
    out = Path(out)
    check_out(out, spec, overwrite)
    frames = _frames(spec.config, data, validation, test)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SPEC, spec.to_dict())
    say = progress or (lambda _msg: None)
    plan = [(seed, v) for seed in spec.seeds for v in spec.variants()]
    results = []
    for n, (seed, v) in enumerate(plan, 1):
        where = f"[{n}/{len(plan)}] {v.name}, seed {seed}"
        rcfg = variant_config(spec.config, v, seed, spec.architecture_options)
        old = read_result(result_path(out, v, seed))
        if is_done(old, rcfg, run_path(out, v, seed)):
            assert old is not None
            results.append(old)
            say(f"{where}: done earlier, kept")
            continue
        t0 = time.perf_counter()
        record = _run_one(spec, out, v, seed, rcfg, frames)
        write_json_atomic(result_path(out, v, seed), record)
        results.append(record)
        if record["status"] == "ok":
            epochs = max(int(record.get("epochs_run") or 1), 1)
            say(f"{where}: {time.perf_counter() - t0:.1f}s, {epochs} epochs")
        else:
            say(f"{where}: FAILED ({record['error']})")
    return results


def _frames(
    cfg: RunConfig,
    data: pd.DataFrame | None,
    validation: pd.DataFrame | None,
    test: pd.DataFrame | None,
) -> Frames:
    """The data every run trains on, read once (a config with sources reads its own)."""
    if not cfg.sources:
        return read_frames(cfg.data, data, validation, test)
    if data is not None:
        raise PolytaskError("a config with sources reads each source's data itself")
    return data, validation, test


def _run_one(
    spec: CompareSpec, out: Path, v: Variant, seed: int, rcfg: RunConfig, frames: Frames
) -> dict[str, Any]:
    """Train one variant and seed; its result record, ``status`` "ok" or "failed"."""
    affinity = None
    if v.kind == "multi" and spec.affinity_every > 0:
        affinity = TaskAffinity(spec.affinity_every)
    record: dict[str, Any] = {"variant": v.to_dict(), "seed": seed, "config": rcfg.to_dict()}
    try:
        model = api.train_run(
            rcfg,
            *frames,
            out=run_path(out, v, seed),
            # the folder is the comparison's own: an unfinished or stale run of this
            # variant is replaced (check_out refused a different config already)
            overwrite=True,
            verbose=False,
            callbacks=[affinity] if affinity is not None else [],
        )
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: stop, say how to go on
        stop = KeyboardInterrupt(
            f"comparison interrupted in {v.name}, seed {seed}; run the same command "
            "again to go on (finished runs are kept)"
        )
        stop.exit_code = getattr(err, "exit_code", 130)  # type: ignore[attr-defined]
        raise stop from None
    except Exception as err:  # a failed run is reported; the others go on
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        return record | {
            "status": "failed",
            "error": f"{type(err).__name__}: {message}",
            "traceback": None if isinstance(err, PolytaskError) else traceback.format_exc(),
        }
    info = model.info
    spent = affinity.seconds if affinity is not None else 0.0
    epochs = max(int(info.get("epochs_run") or 1), 1)
    return record | {
        "status": "ok",
        "metrics": model.metrics,
        "params": sum(p.numel() for p in model.net.parameters()),
        "epochs_run": info.get("epochs_run"),
        "best_epoch": info.get("best_epoch"),
        "train_seconds": info.get("train_seconds"),
        "affinity_seconds": round(spent, 4),
        "seconds_per_epoch": round((float(info.get("train_seconds") or 0.0) - spent) / epochs, 5),
    }


def compare(
    spec: CompareSpec,
    out: str | Path,
    data: pd.DataFrame | None = None,
    validation: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    report: bool = True,
) -> Comparison:
    """Run (or resume) the comparison, write results.json/.md/.csv and the HTML report;
    returns the :class:`~polytask.evaluation.summary.Comparison`."""
    run_comparison(spec, out, data, validation, test, overwrite=overwrite, progress=progress)
    comparison = summarise_comparison(out)
    write_results(out, comparison)
    if report:
        write_report(out)
    return comparison
