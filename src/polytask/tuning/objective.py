"""What a trial is scored by: ``tune.objective`` read against the tasks, and pruning
from the per-epoch validation values (a training callback)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polytask.errors import PolytaskError
from polytask.metrics.delta_m import delta_m
from polytask.tasks import Task
from polytask.training import Callback

#: metrics where lower is better (any other metric: higher is better)
LOWER_BETTER = {"mae", "rmse", "log_loss", "loss", "brier", "ece"}


@dataclass(frozen=True)
class Objective:
    """``kind``: delta_m, loss, metric or pareto; ``targets``: (task, metric) per value."""

    kind: str
    targets: list[tuple[str, str]]
    directions: list[str]
    headline: dict[str, dict[str, bool]]

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    def values(
        self,
        metrics: Mapping[str, Any],
        losses: Mapping[str, float],
        baseline: Mapping[str, Any] | None,
    ) -> list[float]:
        """The trial's value(s) from validation metrics and task losses (NaN: undefined)."""
        if self.kind == "delta_m":
            d = delta_m(metrics, baseline or {}, self.headline).value
            return [math.nan if d is None else d]
        if self.kind == "loss":
            return [float(sum(losses.values()))]
        out = []
        for task, metric in self.targets:
            v = metrics.get(task, {}).get(metric)
            out.append(math.nan if v is None else float(v))
        return out


def objective_of(name: str, tasks: list[Task]) -> Objective:
    """``tune.objective`` checked against the tasks (a bad one: one line naming the fix)."""
    headline = {t.name: dict(t.headline) for t in tasks}
    if name == "delta_m":
        return Objective("delta_m", [], ["minimize"], headline)
    if name == "loss":
        return Objective("loss", [], ["minimize"], headline)
    if name == "pareto":
        targets = [(t.name, next(iter(t.headline))) for t in tasks]
        dirs = ["maximize" if headline[t][m] else "minimize" for t, m in targets]
        return Objective("pareto", targets, dirs, headline)
    task, _, metric = name.partition(".")
    if task not in headline or not metric:
        raise PolytaskError(
            f"`tune.objective` '{name}' is not delta_m, loss, pareto or TASK.METRIC with a "
            f"task of this config ({', '.join(headline)}); e.g. {tasks[0].name}."
            f"{next(iter(tasks[0].headline))}"
        )
    higher = headline[task].get(metric, metric not in LOWER_BETTER)
    return Objective("metric", [(task, metric)], ["maximize" if higher else "minimize"], headline)


class Pruning(Callback):
    """Reports each epoch's validation value to the trial and stops a hopeless trial
    (raises ``optuna.TrialPruned``); single objectives only."""

    def __init__(self, trial: Any, objective: Objective, baseline: Mapping[str, Any] | None):
        self.trial = trial
        self.objective = objective
        self.baseline = baseline

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        import optuna

        val = record.get("validation")
        if val is None:
            return
        value = self.objective.values(val["metrics"], val["loss"], self.baseline)[0]
        if not math.isfinite(value):
            return
        self.trial.report(value, record["epoch"])
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")
