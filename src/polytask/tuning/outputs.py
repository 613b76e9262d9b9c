"""What a study leaves in its folder: ``best.yaml`` (the best trial's config, which
``polytask train --config`` trains as is), ``trials.csv`` (one row per trial) and
``report.html`` (:mod:`polytask.tuning.report`)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import yaml

from polytask.errors import PolytaskError
from polytask.io import write_text
from polytask.metrics.delta_m import delta_m
from polytask.tuning.objective import Objective

BEST = "best.yaml"
TRIALS = "trials.csv"


def done_trials(study: Any) -> list[Any]:
    return [t for t in study.trials if t.state.name == "COMPLETE"]


def best_trial(study: Any, objective: Objective) -> Any:
    """The best complete trial; for a Pareto front, the front's trial with the lowest Δm
    against the baseline on validation."""
    if not done_trials(study):
        raise PolytaskError("no trial of the study finished; give more `trials` or `timeout`")
    if not objective.multi:
        return study.best_trial
    baseline = study.user_attrs["baseline"]["validation"]

    def dm(t: Any) -> float:
        d = delta_m(t.user_attrs.get("validation", {}), baseline, objective.headline).value
        return math.inf if d is None else d

    return min(study.best_trials, key=dm)


def _absolute(config: dict[str, Any]) -> dict[str, Any]:
    """Data paths made absolute: a config file's relative paths start at its own folder,
    and best.yaml is not where the data path was given."""
    for dc in (config.get("data") or {}, *(s.get("data") or {} for s in config.get("sources", []))):
        for key in ("path", "validation", "test"):
            value = dc.get(key)
            if value and not any(c in value for c in "*?[") and not Path(value).is_absolute():
                dc[key] = str(Path(value).resolve())
    return config


def write_best(out: Path, trial: Any) -> Path:
    path = out / BEST
    header = f"# polytask tune: trial {trial.number}, the best of the study in this folder\n"
    config = _absolute(dict(trial.user_attrs["config"]))
    write_text(path, header + yaml.safe_dump(config, sort_keys=False))
    return path


def trial_rows(study: Any, objective: Objective) -> list[dict[str, Any]]:
    names = ["value"] if not objective.multi else [f"{t}.{m}" for t, m in objective.targets]
    rows = []
    for t in study.trials:
        values = t.values or [None] * len(names)
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        row |= dict(zip(names, values, strict=True))
        dur = t.duration.total_seconds() if t.duration is not None else None
        row["seconds"] = None if dur is None else round(dur, 2)
        row["epochs_run"] = t.user_attrs.get("epochs_run")
        row |= {k: v for k, v in t.params.items()}
        rows.append(row)
    return rows


def write_trials(out: Path, study: Any, objective: Objective) -> Path:
    rows = trial_rows(study, objective)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    w.writerows(rows)
    path = out / TRIALS
    write_text(path, buf.getvalue())
    return path
