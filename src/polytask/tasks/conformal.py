"""Split-conformal prediction intervals for regression and count tasks.

After training, the absolute residuals |y − ŷ| of the validation split's labelled rows
are taken in the target's own units (days, counts: the scale the interval is reported
in, so a log-trained target's residuals are of the back-transformed prediction). At
coverage 1 − α the interval is ŷ ± q with q the ⌈(n + 1)(1 − α)⌉-th smallest of the n
residuals (the finite-sample quantile of Vovk et al. 2005 and Lei et al. 2018); where
that rank exceeds n, q is infinite. For exchangeable rows it covers a new label with
probability at least 1 − α. A target that cannot be negative (counts, log-trained
targets) has its lower bound clipped at 0, which never uncovers a label.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from polytask.tasks.base import TaskOptions

#: residuals kept in the run at most; beyond, evenly spaced order statistics of them
KEEP = 4096


class IntervalOptions(TaskOptions):
    #: coverage of the split-conformal intervals (TASK_lower, TASK_upper) fitted on the
    #: validation split after training; null (none in a task spec): no intervals
    intervals: float | None = Field(0.9, gt=0, lt=1)

    @field_validator("intervals", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        """``COLUMN:regression:intervals=none`` (a spec's values are text)."""
        return None if isinstance(value, str) and value.lower() in ("none", "null") else value


def rank(n: int, coverage: float) -> int:
    """⌈(n + 1) · coverage⌉: the order statistic that is the interval's half-width."""
    return math.ceil((n + 1) * coverage - 1e-9)


class Conformal:
    """A task's sorted validation residuals (None: not fitted) and the coverage its
    intervals are at (the task's ``intervals`` option unless a prediction says other)."""

    def __init__(self, coverage: float | None):
        self.default = coverage
        self.coverage = coverage
        self.residuals: np.ndarray | None = None
        self.n = 0

    @property
    def fitted(self) -> bool:
        return self.residuals is not None and self.coverage is not None

    def fit(self, pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
        """Keep the validation residuals; returns ``{"coverage", "radius", "n"}``."""
        res = np.sort(np.abs(np.asarray(true, float) - np.asarray(pred, float)))
        self.n = int(res.size)
        if res.size > KEEP:
            res = res[np.round(np.linspace(0, res.size - 1, KEEP)).astype(int)]
        self.residuals = res
        return {"coverage": self.coverage, "radius": _json(self.radius()), "n": self.n}

    def radius(self, coverage: float | None = None) -> float:
        """The interval's half-width at ``coverage`` (default: the current one)."""
        c = self.coverage if coverage is None else coverage
        if self.residuals is None or c is None:
            return math.inf
        k = rank(self.n, c)
        if k > self.n or self.n == 0:
            return math.inf
        m = self.residuals.size
        at = k - 1 if m == self.n else math.ceil((k - 1) * (m - 1) / max(self.n - 1, 1))
        return float(self.residuals[min(at, m - 1)])

    def bounds(self, pred: np.ndarray, floor: float | None) -> tuple[np.ndarray, np.ndarray]:
        q = self.radius()
        lower, upper = pred - q, pred + q
        if floor is not None:
            lower = np.maximum(lower, floor)
        return lower, upper

    def columns(self, name: str, pred: np.ndarray, floor: float | None) -> dict[str, np.ndarray]:
        """``TASK_lower`` and ``TASK_upper`` (nothing where no intervals are fitted)."""
        if not self.fitted:
            return {}
        lower, upper = self.bounds(pred, floor)
        return {f"{name}_lower": lower, f"{name}_upper": upper}

    def metrics(self, pred: np.ndarray, true: np.ndarray, floor: float | None) -> dict[str, Any]:
        """Empirical ``coverage`` and mean ``interval_width`` (in the target's units) of
        the labelled rows; nothing where no intervals are fitted."""
        if not self.fitted:
            return {}
        if true.size == 0:
            return {"coverage": None, "interval_width": None}
        lower, upper = self.bounds(pred, floor)
        width = float(np.mean(upper - lower))
        return {
            "coverage": float(np.mean((true >= lower) & (true <= upper))),
            "interval_width": width if math.isfinite(width) else None,
        }

    def state(self) -> dict[str, Any] | None:
        if self.residuals is None:
            return None
        return {"n": self.n, "residuals": self.residuals.tolist()}

    def load_state(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.n = int(state["n"])
        self.residuals = np.asarray(state["residuals"], dtype=np.float64)


def _json(value: float) -> float | None:
    return value if math.isfinite(value) else None


# -- what the kinds that predict a number share (regression, count) -----------------------------


def interval_fit(
    task: Any, conformal: Conformal, output: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> dict[str, Any]:
    """Fit ``conformal`` on the validation residuals of ``task``'s decoded predictions
    against its labels, both in the label's units."""
    if conformal.default is None:
        return {}
    pred = task.decode(output[mask])[task.name]
    true = task.labels_in_units(target[mask])
    return conformal.fit(pred, true)


def use_coverage(conformal: Conformal, coverage: float | None) -> bool:
    conformal.coverage = conformal.default if coverage is None else coverage
    return conformal.residuals is not None


def interval_state(task: Any) -> dict[str, Any]:
    state = task.conformal.state()
    return {} if state is None else {"conformal": state}


def interval_spec(task: Any) -> dict[str, Any]:
    """The ONNX decoder's fields of fitted intervals: half-width (None: unbounded) and
    the lower bound's floor."""
    if not task.conformal.fitted:
        return {}
    radius = task.conformal.radius()
    return {"interval_radius": radius if np.isfinite(radius) else None, "floor": task._floor()}


def interval_description(conformal: Conformal, column: str) -> str:
    side = "lower" if column.endswith("_lower") else "upper"
    c = conformal.coverage or 0.0
    return f"{side} end of the {c:.0%} split-conformal interval, in the label's units"
