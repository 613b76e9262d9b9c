"""The task protocol: one prediction target and everything that is specific to its kind.

A task kind owns its options (a pydantic model declared next to its code), how raw labels
become tensors (``fit`` on the training split, then ``encode``), its loss with missing
labels masked out, its metrics, and how model outputs become user-facing predictions.
It also owns what the rest of polytask would otherwise switch on its name for: which way
each metric is better (``directions``, the one place a metric's direction is declared), the
score scikit-learn averages, class probabilities, whether serving can return its outputs
as one row per record, and its single-task gradient-boosting baseline. Adding a kind is one
new module plus :func:`polytask.tasks.register` (a line in ``tasks/__init__.py`` for the
built-in kinds).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict

from polytask.errors import PolytaskError


class TaskOptions(BaseModel):
    """Options shared by every kind; each kind extends this with its own."""

    model_config = ConfigDict(extra="forbid")

    #: a column of per-row sample weights (>= 0) for this task's training loss: the
    #: loss is the weighted mean over labelled rows (metrics stay unweighted)
    weight: str | None = None


class Task(ABC):
    """One prediction target. Subclasses set ``kind``, ``Options``, ``directions``,
    ``headline_metrics`` and ``score_metric``."""

    kind: ClassVar[str]
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    #: every metric :meth:`metrics` can report, True where higher is better
    directions: ClassVar[dict[str, bool]]
    #: the metrics used for Δm and model comparison (names from ``directions``)
    headline_metrics: ClassVar[tuple[str, ...]]
    #: ``{metric: higher_is_better}`` of the headline metrics, derived from the two above
    headline: ClassVar[dict[str, bool]]
    #: the metric :meth:`sklearn_score` turns into scikit-learn's higher-is-better score
    #: (default: the first headline metric)
    score_metric: ClassVar[str]
    #: True for per-pixel tasks: the head is a decoder that restores the input resolution,
    #: outputs are (N, output_size, H, W) and targets and masks (N, H, W); serving and
    #: export, which answer one row of numbers per record, refuse them
    dense: ClassVar[bool] = False
    #: True where the task may read several label columns (multilabel's 0/1 columns)
    multi_column: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Derive ``headline`` from ``headline_metrics`` and ``directions`` so a metric's
        direction is written once; a name missing from ``directions`` is an error here,
        at class definition, not at the first comparison."""
        super().__init_subclass__(**kwargs)
        directions = getattr(cls, "directions", None)
        names = getattr(cls, "headline_metrics", None)
        if directions is None or names is None:
            return  # an abstract intermediate class
        if not hasattr(cls, "score_metric"):
            cls.score_metric = names[0]
        unknown = [m for m in (*names, cls.score_metric) if m not in directions]
        if unknown:
            raise TypeError(f"{cls.__name__}: metric '{unknown[0]}' is not in its directions")
        cls.headline = {m: directions[m] for m in names}

    def __init__(self, name: str, columns: list[str], options: TaskOptions | None = None):
        self.name = name
        self.columns = list(columns)
        self.options = options if options is not None else self.Options()
        self.fitted = False

    # -- labels ----------------------------------------------------------------------------
    def labels_of(self, frame: pd.DataFrame) -> pd.Series | pd.DataFrame:
        """The raw label column(s) of this task in ``frame``."""
        if len(self.columns) == 1:
            return frame[self.columns[0]]
        return frame[self.columns]

    def weights_of(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The ``weight`` option's column as float32 (None without one); a missing,
        negative or non-numeric weight is an error naming the column and row."""
        column = self.options.weight
        if column is None:
            return None
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            value = frame[column].iloc[at]
            shown = value.item() if isinstance(value, np.generic) else value
            raise self._error(
                f"weight column '{column}' row {frame.index[at]} holds {shown!r}; "
                "sample weights are numbers >= 0 on every row (0 leaves a row out)"
            )
        return values.astype(np.float32)

    @abstractmethod
    def fit(self, labels: Any) -> None:
        """Learn what encoding needs (classes, scaling) from the training labels."""

    @abstractmethod
    def encode(self, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw labels -> (target, mask). ``mask`` is True where a label is present; the
        target holds a harmless placeholder (0) where it is not, so masked losses stay
        finite."""

    @property
    @abstractmethod
    def output_size(self) -> int:
        """Number of output units of this task's head."""

    @abstractmethod
    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-row (or per-element) loss, same shape as the mask."""

    def loss(
        self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Mean loss over labelled rows; exactly 0 (never NaN) when none is labelled.

        ``mask=None`` means every row is labelled (the fast path)."""
        if mask is None:
            return self.mean_loss(output, target)
        elem = self.elementwise_loss(output, target)
        m = mask.to(elem.dtype)
        return (elem * m).sum() / m.sum().clamp_min(1.0)

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over every row (no mask). Kinds override this with torch's fused
        reductions, which are faster than ``elementwise_loss(...).mean()``."""
        return self.elementwise_loss(output, target).mean()

    # -- outputs composed from other tasks' (polytask.tasks.compose) --------------------------
    def composes_with(self) -> tuple[str, ...]:
        """Names of the tasks whose raw outputs this task's output is composed from (an
        entire-space task reads its parent's); empty (the default): it stands alone."""
        return ()

    def check_parent(self, parent: Task) -> None:
        """Refuse, with one line, a task this one cannot be composed from."""
        return None

    def compose(self, own: torch.Tensor, parents: list[torch.Tensor]) -> torch.Tensor:
        """This task's raw output from its head's (``own``) and its parents' outputs."""
        return own

    @property
    def raw_width(self) -> int:
        """Columns of this task's raw output after :meth:`compose` (what ``decode``,
        ``metrics`` and the loss see): the head's ``output_size`` unless composed."""
        return self.output_size

    # -- several tasks of a kind at once (loss values without autograd) ------------------------
    def group_key(self) -> Hashable | None:
        """Tasks of one class with equal keys compute their per-row losses together, one
        column each, with :meth:`columns_loss` (see :mod:`polytask.tasks.grouped`). None
        (the default): this task's loss is computed on its own."""
        return None

    @classmethod
    def columns_loss(
        cls, tasks: list[Task], output: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Per-row losses of one-output tasks sharing a :meth:`group_key`: ``output`` and
        ``target`` are (N, G), a column per task; returns (N, G) equal to each task's
        :meth:`elementwise_loss` on its column."""
        raise NotImplementedError

    def initial_bias(self) -> torch.Tensor | None:
        """A good starting bias for the head's last layer (e.g. the base rate), or None."""
        return None

    # -- evaluation and decoding -------------------------------------------------------------
    @abstractmethod
    def metrics(
        self, output: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> dict[str, float | None]:
        """Metrics over labelled rows; an undefined metric is None. Adds no ``n``."""

    def metric_names(self) -> list[str]:
        """The names :meth:`metrics` reports (for this fitted task)."""
        empty = self.metrics(np.zeros((0, self.raw_width)), np.zeros(0), np.zeros(0, dtype=bool))
        return list(empty)

    @abstractmethod
    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs -> prediction columns keyed by column name (``TASK``, ``TASK_proba``)."""

    def higher_is_better(self, metric: str) -> bool:
        """Which way ``metric`` of this task is better (``directions``)."""
        return self.directions[metric]

    def sklearn_score(self, metrics: dict[str, Any]) -> float | None:
        """This task's share of ``MultiTaskEstimator.score``: ``score_metric`` from
        :meth:`metrics`, negated where lower is better (scikit-learn maximises scores);
        None where it is undefined."""
        value = metrics.get(self.score_metric)
        if value is None:
            return None
        return float(value) if self.directions[self.score_metric] else -float(value)

    def class_labels(self) -> list[Any] | None:
        """The classes, in the column order of :meth:`class_probabilities`; None for a
        kind that predicts no class (scikit-learn's ``classes_`` lists only these)."""
        return None

    def class_probabilities(self, output: np.ndarray) -> np.ndarray | None:
        """Raw outputs -> (N, K) probabilities, one column per :meth:`class_labels`
        entry (scikit-learn's ``predict_proba``); None for a kind without classes."""
        return None

    def serving_info(self) -> dict[str, Any]:
        """What ``GET /metadata`` tells a client about this task's outputs beyond its
        name, kind and columns (keys of serving's ``TaskInfo``: ``classes``, ``positive``,
        ``threshold``, ``separator``, ``units``)."""
        return {}

    def describe_prediction(self) -> str:
        """One phrase for the ``TASK`` column of a prediction (the serving schema)."""
        return "prediction in the label's units"

    def describe_column(self, column: str) -> str | None:
        """One phrase for a prediction column other than ``TASK`` (the serving schema);
        None: the default (a probability, or a 0/1 indicator)."""
        return None

    def onnx_decoding(self) -> dict[str, Any] | None:
        """The fields an exported model's preprocessing file gives the standalone decoder
        for this task (docs/onnx.md); None where that decoder, which knows the built-in
        kinds by name, cannot decode this kind, so export refuses it."""
        return None

    def n_labelled(self, mask: np.ndarray) -> int:
        """Rows with at least one label (a row of a multilabel or dense task counts once)."""
        if mask.ndim == 1:
            return int(mask.sum())
        return int(mask.reshape(mask.shape[0], -1).any(axis=1).sum())

    # -- corrections fitted after training (calibration, intervals) ----------------------------
    #: what this kind corrects once training ends, fitted on the validation split:
    #: ``"temperature"`` (probabilities, see :mod:`polytask.tasks.calibration`) or
    #: ``"intervals"`` (split-conformal, see :mod:`polytask.tasks.conformal`)
    corrections: ClassVar[tuple[str, ...]] = ()

    def fit_corrections(
        self, output: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> dict[str, Any]:
        """Fit this kind's corrections on the validation split's raw outputs (labelled
        rows per ``mask``); returns what was fitted, for the run ({}: nothing)."""
        return {}

    def correction_evidence(
        self, output: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> dict[str, Any]:
        """What the report shows of the corrections on a split (reliability bins before
        and after the temperature; coverage and width of the intervals); {}: nothing."""
        return {}

    def use_corrections(self, calibrated: bool = True, coverage: float | None = None) -> bool:
        """Prediction-time settings: ``calibrated=False`` leaves a fitted temperature
        out; ``coverage`` sets fitted intervals' coverage (None: the task's option).
        True where this task has fitted intervals that ``coverage`` applies to."""
        return False

    # -- the single-task baseline ----------------------------------------------------------------
    def baseline_estimator(self, categorical: list[bool], seed: int) -> Any | None:
        """An unfitted scikit-learn estimator for this task alone (the gradient-boosting
        baseline), fitted on the encoded targets of labelled rows; None: no baseline."""
        return None

    def baseline_scores(self, estimator: Any, x: np.ndarray, target: np.ndarray) -> dict:
        """Metrics of the fitted :meth:`baseline_estimator` on ``x`` against encoded
        ``target`` (labelled rows only), in this task's metric names and units."""
        raise NotImplementedError

    # -- persistence -------------------------------------------------------------------------
    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Fitted state as plain JSON data."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""

    def describe(self) -> str:
        return f"{self.name} ({self.kind})"

    def _error(self, message: str) -> PolytaskError:
        return PolytaskError(f"task '{self.name}': {message}")


# -- helpers shared by kinds ------------------------------------------------------------------


def shown_classes(classes: list[Any]) -> str:
    """The first ten classes for a message, with an ellipsis past them."""
    return ", ".join(repr(c) for c in classes[:10]) + (", ..." if len(classes) > 10 else "")


def safe_metric(fn: Any, *args: Any, **kwargs: Any) -> float | None:
    """Call a scikit-learn metric; None where it is undefined or not finite. Undefined is
    a result here, not a warning: R² of a tiny validation split whose labels are all
    equal divides by zero, which would print numpy's RuntimeWarning at every epoch."""
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(fn(*args, **kwargs))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
