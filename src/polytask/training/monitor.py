"""The value early stopping (and the plateau schedule) watches: ``training.monitor``."""

from __future__ import annotations

import warnings
from typing import Any

from polytask.errors import PolytaskError
from polytask.tasks import KINDS, Task


def kept_for(monitor: str, task: str | None, kind: str) -> str:
    """``monitor`` for a model of the one task ``task`` (of ``kind``): kept where it
    watches that task (``TASK.METRIC``) or a metric its kind has (``METRIC``), else
    ``loss``."""
    if monitor == "loss":
        return monitor
    name, dot, _ = monitor.partition(".")
    if dot:
        return monitor if name == task else "loss"
    cls = KINDS.get(kind)
    return monitor if cls is not None and monitor in cls.directions else "loss"


class Monitor:
    """``loss`` (the summed validation loss), ``TASK.METRIC``, or ``METRIC`` (its mean over
    the tasks that report it, e.g. ``auroc`` for every binary task), checked against the
    tasks when built so a typo fails before training, not after the first epoch."""

    def __init__(self, monitor: str, tasks: list[Task]):
        self.monitor = monitor
        self._warned = False
        self._higher_is_better = False
        #: (task, metric) pairs whose mean is watched
        self.watched: list[tuple[str, str]] = []
        if monitor == "loss":
            return
        names = [t.name for t in tasks]
        task, dot, metric = monitor.partition(".")
        example = next(iter(tasks[0].headline))
        if not dot:
            self._bare(monitor, tasks, example)
            return
        if task not in names or not metric:
            raise PolytaskError(
                f"training.monitor '{monitor}' is not 'loss', METRIC or TASK.METRIC with a "
                f"task of {', '.join(names)} (e.g. '{example}' or '{names[0]}.{example}')"
            )
        known = tasks[names.index(task)].metric_names()
        if metric not in known:
            raise PolytaskError(
                f"training.monitor '{monitor}': task '{task}' has no metric '{metric}'; it "
                f"has {', '.join(known)}"
            )
        # the task's own kind says which way its metric is better (its ``directions``)
        self._higher_is_better = type(tasks[names.index(task)]).directions.get(metric, True)
        self.watched = [(task, metric)]

    def _bare(self, metric: str, tasks: list[Task], example: str) -> None:
        """A metric without a task: every task that reports it."""
        having = [t for t in tasks if metric in t.metric_names()]
        if not having:
            known = sorted({m for t in tasks for m in t.metric_names()})
            raise PolytaskError(
                f"training.monitor '{metric}' is not 'loss', TASK.METRIC or a metric of one "
                f"of the tasks ({', '.join(known)}); e.g. training.monitor: {example}"
            )
        self._higher_is_better = type(having[0]).directions.get(metric, True)
        self.watched = [(t.name, metric) for t in having]

    def value(self, losses: dict[str, float], metrics: dict[str, Any]) -> float:
        """Lower is better: the sum of task losses, or a metric (negated if higher-better;
        the mean of the watched tasks' values). A metric that is undefined on the
        validation split (e.g. AUROC with one class) falls back to the summed loss, with a
        warning, rather than stopping blind."""
        if self.watched:
            values = [metrics[t].get(m) for t, m in self.watched]
            if all(v is not None for v in values):
                value = sum(float(v) for v in values) / len(values)
                return -value if self._higher_is_better else value
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
