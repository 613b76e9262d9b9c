"""Task kinds. A new kind is one module (a :class:`Task` subclass) plus :func:`register`:
a line below for the built-in kinds, a call from your own code for any other. A registered
kind is accepted wherever a kind name is (``COLUMN:KIND``, ``kind:`` in the config, the
API and scikit-learn's ``tasks``), and a run that uses it loads where it is registered."""

from __future__ import annotations

from typing import Any, TypeVar

from polytask.errors import PolytaskError, did_you_mean
from polytask.tasks.base import Task, TaskOptions
from polytask.tasks.binary import BinaryTask
from polytask.tasks.count import CountTask
from polytask.tasks.dense_regression import DenseRegressionTask
from polytask.tasks.entire_space import EntireSpaceTask
from polytask.tasks.multiclass import MulticlassTask
from polytask.tasks.multilabel import MultilabelTask
from polytask.tasks.regression import RegressionTask
from polytask.tasks.segmentation import SegmentationTask

#: the registry: kind name -> class, in registration order (error messages list it so)
KINDS: dict[str, type[Task]] = {}

T = TypeVar("T", bound=type[Task])


def register(cls: T) -> T:
    """Make ``cls`` a task kind under ``cls.kind`` (usable as a class decorator).

    A metric must mean one direction across kinds (``"mae"`` lower-is-better everywhere),
    since early stopping and comparison read a metric's direction by its name; a kind that
    contradicts a registered one, or reuses a registered kind name, is an error."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise PolytaskError(f"{cls.__name__} sets no 'kind' name; give it kind = 'NAME'")
    if kind in KINDS and KINDS[kind] is not cls:
        raise PolytaskError(f"task kind '{kind}' is already registered ({KINDS[kind].__name__})")
    if not hasattr(cls, "directions") or not hasattr(cls, "headline_metrics"):
        raise PolytaskError(f"{cls.__name__} declares no directions and headline_metrics")
    for metric, higher in cls.directions.items():
        known = metric_direction(metric)
        if known is not None and known != higher:
            raise PolytaskError(
                f"{cls.__name__}: metric '{metric}' is {'higher' if higher else 'lower'}-is-"
                f"better but registered kinds have it the other way; give it another name"
            )
    KINDS[kind] = cls
    return cls


def unregister(kind: str) -> None:
    """Remove a kind added by :func:`register` (tests; a plug-in being unloaded)."""
    KINDS.pop(kind, None)


def metric_direction(metric: str) -> bool | None:
    """True where ``metric`` is higher-is-better in the registered kinds, False where
    lower (``loss`` is lower), None where no registered kind reports it."""
    if metric == "loss":
        return False
    for cls in KINDS.values():
        if metric in cls.directions:
            return cls.directions[metric]
    return None


#: the built-in kinds (the CLI's --help and early checks read this tuple from the source)
BUILTIN: tuple[type[Task], ...] = (
    RegressionTask,
    BinaryTask,
    MulticlassTask,
    MultilabelTask,
    CountTask,
    SegmentationTask,
    DenseRegressionTask,
    EntireSpaceTask,
)
for _cls in BUILTIN:
    register(_cls)


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
    if len(columns) > 1 and not cls.multi_column:
        raise PolytaskError(
            f"task '{name}': 'columns' (several label columns) is for kinds that read "
            f"several, such as multilabel; a {kind} task takes one 'column'"
        )
    opts = validate_options(cls.Options, options, where=f"task '{name}' ({kind})")
    return cls(name, columns, opts)


__all__ = [
    "KINDS",
    "Task",
    "TaskOptions",
    "make_task",
    "metric_direction",
    "register",
    "task_class",
    "unregister",
]
