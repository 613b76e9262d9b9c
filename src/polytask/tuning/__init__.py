"""``polytask tune``: a hyperparameter search for multi-task models on Optuna
(:mod:`polytask.tuning.study`), its search space (:mod:`polytask.tuning.space`) and
what it writes (:mod:`polytask.tuning.outputs`, :mod:`polytask.tuning.report`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from polytask.config import RunConfig
from polytask.config.build import build_config
from polytask.config.tune import TuneConfig
from polytask.model import build_tasks
from polytask.tuning.objective import objective_of
from polytask.tuning.outputs import best_trial, write_best, write_trials
from polytask.tuning.report import write_study_report
from polytask.tuning.study import finished, run_study


@dataclass(frozen=True)
class TuneResult:
    #: the best trial's config (what best.yaml holds)
    best_config: RunConfig
    #: its value(s) on validation
    best_values: list[float]
    #: the default config's validation metrics (the baseline)
    baseline: dict[str, Any]
    #: trials complete or pruned in the whole study
    trials: int
    out: Path


def tune(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    tasks: Any = None,
    *,
    out: str | Path,
    trials: int | None = None,
    timeout: float | None = None,
    jobs: int = 1,
    data: pd.DataFrame | None = None,
    validation: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    overwrite: bool = False,
    **options: Any,
) -> TuneResult:
    """Search the config's ``tune.space`` (the default space where it is silent) for
    ``trials`` trials in the whole study and/or ``timeout`` seconds, in ``jobs``
    processes sharing ``out/study.db``; a study already in ``out`` resumes. Writes
    ``out/best.yaml``, ``out/trials.csv`` and ``out/report.html``."""
    cfg = config if isinstance(config, RunConfig) else build_config(config, tasks, **options)
    if cfg.tune is None:
        cfg = cfg.model_copy(update={"tune": TuneConfig()})
    folder = Path(out)
    study = run_study(cfg, folder, (data, validation, test), trials, timeout, jobs, overwrite)
    assert cfg.tune is not None
    objective = objective_of(cfg.tune.objective, build_tasks(cfg))
    best = best_trial(study, objective)
    write_best(folder, best)
    write_trials(folder, study, objective)
    write_study_report(folder, study, objective, best)
    from polytask.config import parse_config

    return TuneResult(
        parse_config(best.user_attrs["config"]),
        list(best.values),
        study.user_attrs["baseline"]["validation"],
        finished(study),
        folder,
    )


__all__ = ["TuneResult", "tune"]
