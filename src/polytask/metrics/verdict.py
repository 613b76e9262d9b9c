"""Per-task verdicts: is the multi-task model better or worse than the single-task model,
and is the difference larger than what changing the seed alone does?

The difference is "clear" when Welch's t-test (unequal variances, one value per seed on
each side) gives p < ``alpha``; with fewer than two seeds on a side no difference is
clear. A clear loss is negative transfer: training the task with the others hurt it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Verdict:
    task: str
    metric: str
    higher_is_better: bool
    stl_mean: float
    stl_std: float
    mtl_mean: float
    mtl_std: float
    #: multi-task minus single-task, in the metric's units
    difference: float
    #: |difference| over the pooled seed-to-seed standard deviation (None: no spread)
    effect: float | None
    #: Welch's t-test p-value (None: fewer than two seeds on a side)
    p_value: float | None
    #: "better", "worse" or "equal" (for the multi-task model)
    direction: str
    #: the difference exceeds the seed-to-seed spread (p < alpha)
    clear: bool

    @property
    def label(self) -> str:
        if self.direction == "equal":
            return "no difference"
        if self.direction == "better":
            return "sharing helps" if self.clear else "better, within seed-to-seed spread"
        return "negative transfer" if self.clear else "worse, within seed-to-seed spread"

    @property
    def negative_transfer(self) -> bool:
        return self.direction == "worse" and self.clear

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


def welch_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Two-sided p-value of Welch's t-test; None with fewer than two values on a side."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return None
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    diff = x.mean() - y.mean()
    if vx + vy == 0:  # no spread at all: any difference is beyond it
        return 0.0 if diff != 0 else 1.0
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def compare_values(
    task: str,
    metric: str,
    higher_is_better: bool,
    stl: Sequence[float],
    mtl: Sequence[float],
    alpha: float = ALPHA,
) -> Verdict:
    """The verdict for one metric from its per-seed values on each side."""
    s, m = np.asarray(stl, dtype=float), np.asarray(mtl, dtype=float)
    s_std = float(s.std(ddof=1)) if len(s) > 1 else 0.0
    m_std = float(m.std(ddof=1)) if len(m) > 1 else 0.0
    diff = float(m.mean() - s.mean())
    pooled = math.sqrt((s_std**2 + m_std**2) / 2)
    p = welch_p(m, s)
    gain = diff if higher_is_better else -diff
    direction = "equal" if gain == 0 else ("better" if gain > 0 else "worse")
    return Verdict(
        task=task,
        metric=metric,
        higher_is_better=higher_is_better,
        stl_mean=float(s.mean()),
        stl_std=s_std,
        mtl_mean=float(m.mean()),
        mtl_std=m_std,
        difference=diff,
        effect=abs(diff) / pooled if pooled > 0 else None,
        p_value=p,
        direction=direction,
        clear=p is not None and p < alpha and direction != "equal",
    )
