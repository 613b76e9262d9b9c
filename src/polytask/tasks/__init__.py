"""Task kinds. A new kind is one module plus one line in ``KINDS``."""

from __future__ import annotations

from typing import Any

from polytask.errors import PolytaskError, did_you_mean
from polytask.tasks.base import Task, TaskOptions
from polytask.tasks.binary import BinaryTask
from polytask.tasks.count import CountTask
from polytask.tasks.dense_regression import DenseRegressionTask
from polytask.tasks.multiclass import MulticlassTask
from polytask.tasks.multilabel import MultilabelTask
from polytask.tasks.regression import RegressionTask
from polytask.tasks.segmentation import SegmentationTask

KINDS: dict[str, type[Task]] = {
    "regression": RegressionTask,
    "binary": BinaryTask,
    "multiclass": MulticlassTask,
    "multilabel": MultilabelTask,
    "count": CountTask,
    "segmentation": SegmentationTask,
    "dense_regression": DenseRegressionTask,
}


def task_class(kind: str) -> type[Task]:
    try:
        return KINDS[kind]
    except KeyError:
        raise PolytaskError(
            f"unknown task kind '{kind}'{did_you_mean(kind, KINDS)}; "
            f"choose one of {', '.join(KINDS)}"
        ) from None


def make_task(name: str, kind: str, columns: list[str], options: dict[str, Any]) -> Task:
    """Build a task, validating its options against the kind's declared options."""
    from polytask.config import validate_options

    cls = task_class(kind)
    opts = validate_options(cls.Options, options, where=f"task '{name}' ({kind})")
    return cls(name, columns, opts)


__all__ = ["KINDS", "Task", "TaskOptions", "make_task", "task_class"]
