"""The value early stopping (and the plateau schedule) watches: ``training.monitor``."""

from __future__ import annotations

import warnings
from typing import Any

from polytask.errors import PolytaskError
from polytask.tasks import Task


class Monitor:
    """``loss`` (the summed validation loss) or ``TASK.METRIC``, checked against the
    tasks when built so a typo fails before training, not after the first epoch."""

    def __init__(self, monitor: str, tasks: list[Task]):
        self.monitor = monitor
        self._warned = False
        self._higher_is_better = False
        if monitor == "loss":
            return
        names = [t.name for t in tasks]
        task, _, metric = monitor.partition(".")
        example = next(iter(tasks[0].headline))
        if task not in names or not metric:
            raise PolytaskError(
                f"training.monitor '{monitor}' is not 'loss' or TASK.METRIC with a task of "
                f"{', '.join(names)} (e.g. '{names[0]}.{example}')"
            )
        known = tasks[names.index(task)].metric_names()
        if metric not in known:
            raise PolytaskError(
                f"training.monitor '{monitor}': task '{task}' has no metric '{metric}'; it "
                f"has {', '.join(known)}"
            )
        # the task's own kind says which way its metric is better (its ``directions``)
        self._higher_is_better = type(tasks[names.index(task)]).directions.get(metric, True)

    def value(self, losses: dict[str, float], metrics: dict[str, Any]) -> float:
        """Lower is better: the sum of task losses, or a metric (negated if higher-better).
        A metric that is undefined on the validation split (e.g. AUROC with one class)
        falls back to the summed loss, with a warning, rather than stopping blind."""
        if self.monitor != "loss":
            task, _, metric = self.monitor.partition(".")
            value = metrics[task].get(metric)
            if value is not None:
                return -float(value) if self._higher_is_better else float(value)
            if not self._warned:
                warnings.warn(
                    f"training.monitor '{self.monitor}' is undefined on the validation "
                    "split (too few labels or one class); early stopping uses the summed "
                    "validation loss instead",
                    UserWarning,
                    stacklevel=3,
                )
                self._warned = True
        return float(sum(losses.values()))
