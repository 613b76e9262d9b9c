"""Δm: the average relative change of a multi-task model against single-task models.

    Δm% = (1/K) Σ_k (−1)^δ_k (M_mtl,k − M_stl,k) / M_stl,k × 100

K counts metrics (not tasks), δ_k = 1 where higher is better, and the baseline M_stl,k is
the single-task model of metric k's task. Lower is better: a negative Δm means the
multi-task model beats the single-task models on average.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polytask.errors import PolytaskError

#: the definition, printed next to every Δm
FORMULA = (
    "Δm% = (1/K) Σ_k (−1)^δ_k (M_mtl,k − M_stl,k) / M_stl,k × 100, K = number of headline "
    "metrics, δ_k = 1 where higher is better, single-task models as baseline; lower is "
    "better (negative: multi-task beats single-task)"
)

#: {task: {metric: higher_is_better}}
Headline = Mapping[str, Mapping[str, bool]]
Scores = Mapping[str, Mapping[str, Any]]


def headline_of(tasks: list[Any]) -> dict[str, dict[str, bool]]:
    """Each task's headline metrics (see ``Task.headline``) keyed by task name."""
    return {t.name: dict(t.headline) for t in tasks}


@dataclass(frozen=True)
class DeltaM:
    #: Δm in percent (None when no metric could be compared)
    value: float | None
    #: per "task.metric": its signed relative change in percent, the term of the sum
    terms: dict[str, float]
    #: "task.metric" left out because a value was missing, undefined or a zero baseline
    skipped: list[str]

    @property
    def k(self) -> int:
        return len(self.terms)


def relative_change(mtl: float, stl: float, higher_is_better: bool) -> float:
    """One term of the sum, in percent: positive where the multi-task model is worse."""
    sign = -1.0 if higher_is_better else 1.0
    return sign * (mtl - stl) / abs(stl) * 100.0


def delta_m(mtl: Scores, stl: Scores, headline: Headline) -> DeltaM:
    """Δm% of ``mtl`` against ``stl``, both ``{task: {metric: value}}``.

    A metric missing or undefined (None, NaN) on either side, or with a baseline of 0, is
    left out of K and named in ``skipped``."""
    terms: dict[str, float] = {}
    skipped: list[str] = []
    for task, metrics in headline.items():
        for metric, higher in metrics.items():
            key = f"{task}.{metric}"
            a = _number(mtl.get(task, {}).get(metric))
            b = _number(stl.get(task, {}).get(metric))
            if a is None or b is None or b == 0:
                skipped.append(key)
                continue
            terms[key] = relative_change(a, b, higher)
    if not headline:
        raise PolytaskError("Δm needs at least one task with a headline metric")
    value = sum(terms.values()) / len(terms) if terms else None
    return DeltaM(value, terms, skipped)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
