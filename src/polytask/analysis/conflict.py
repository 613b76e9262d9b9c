"""Gradient conflict over training, per pair of tasks, with its evidence.

The trainer measures the pairwise cosine similarity of the task gradients every few steps
and logs each epoch's mean under ``record["cosine"]`` as ``{"a~b": value}``, with how
many measurements it is of (``cosine_n``) and their standard deviation (``cosine_sd``;
see ``training/balance_log.py``). Per pair this module gives the mean over all
measurements, a 95% confidence interval of that mean (Student's t over the measurements;
consecutive steps are correlated, so it is optimistic, which the rule's margins allow
for), the share of logged epochs with a negative mean, and the trend: the least-squares
slope of the epoch means against training progress (0 at the first logged epoch, 1 at
the last).

The label follows one stated rule (:func:`label_of`), in this order:

- fewer than ``MIN_MEASUREMENTS`` measurements: "too few measurements";
- the whole interval below ``-CONFLICT_MARGIN``: "conflicting";
- the whole interval within ±``ALIGNED_MARGIN``: "near orthogonal" (a cosine that hovers
  around 0 has half its epochs below 0, which is no conflict);
- at least 4 logged epochs and a quarter of them with a mean below ``-CONFLICT_MARGIN``:
  "often conflicting";
- the whole interval above ``ALIGNED_MARGIN``: "aligned";
- otherwise (a wide interval): "inconclusive".

A history from before the counts were logged counts each epoch's mean as one measurement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import t as student_t

PAIR_SEPARATOR = "~"
#: the fewest measurements a pair needs before it gets a verdict
MIN_MEASUREMENTS = 8
#: "conflicting": the interval of the mean cosine lies below -CONFLICT_MARGIN
CONFLICT_MARGIN = 0.05
#: "aligned": it lies above ALIGNED_MARGIN; "near orthogonal": within ±ALIGNED_MARGIN
ALIGNED_MARGIN = 0.1
#: "often conflicting": this share of at least OFTEN_EPOCHS logged epochs below
#: -CONFLICT_MARGIN
OFTEN_SHARE, OFTEN_EPOCHS = 0.25, 4
#: labels that claim a conflict (the report marks them)
CONFLICT_LABELS = ("conflicting", "often conflicting")


@dataclass(frozen=True)
class PairConflict:
    a: str
    b: str
    mean: float
    #: share of logged epochs whose mean cosine was below 0
    negative_share: float
    #: change of the cosine from the start to the end of training (least-squares slope)
    trend: float
    epochs: int
    #: how many cosines were measured (steps), over all epochs and runs
    measurements: int = 0
    #: 95% confidence interval of the mean cosine (NaN with fewer than two measurements)
    low: float = math.nan
    high: float = math.nan
    #: share of logged epochs whose mean cosine was below -CONFLICT_MARGIN
    conflict_share: float = 0.0

    @property
    def pair(self) -> str:
        return f"{self.a}{PAIR_SEPARATOR}{self.b}"

    @property
    def label(self) -> str:
        return label_of(self)

    @property
    def evidence(self) -> str:
        """'24 measurements over 6 epochs, 95% interval [-0.31, -0.12]'."""
        text = f"{self.measurements} measurement{'s' if self.measurements != 1 else ''}"
        text += f" over {self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        if math.isfinite(self.low):
            text += f", 95% interval [{self.low:+.2f}, {self.high:+.2f}]"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pair": self.pair, "label": self.label}


def label_of(p: PairConflict) -> str:
    """The module docstring's rule."""
    if p.measurements < MIN_MEASUREMENTS or not math.isfinite(p.high):
        return "too few measurements"
    if p.high < -CONFLICT_MARGIN:
        return "conflicting"
    if p.low >= -ALIGNED_MARGIN and p.high <= ALIGNED_MARGIN:
        return "near orthogonal"
    if p.epochs >= OFTEN_EPOCHS and p.conflict_share >= OFTEN_SHARE:
        return "often conflicting"
    if p.low > ALIGNED_MARGIN:
        return "aligned"
    return "inconclusive"


@dataclass
class _Epochs:
    """One pair's logged epochs: mean, count and spread of each."""

    means: list[float]
    counts: list[int]
    sds: list[float]

    def extend(self, other: _Epochs) -> None:
        self.means += other.means
        self.counts += other.counts
        self.sds += other.sds


def _epochs(history: list[dict[str, Any]]) -> dict[str, _Epochs]:
    out: dict[str, _Epochs] = {}
    for record in history:
        counts, sds = record.get("cosine_n") or {}, record.get("cosine_sd") or {}
        for pair, value in (record.get("cosine") or {}).items():
            if value is not None:
                e = out.setdefault(pair, _Epochs([], [], []))
                e.means.append(float(value))
                e.counts.append(int(counts.get(pair, 1)))
                e.sds.append(float(sds.get(pair, 0.0)))
    return out


def cosine_series(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per pair, its epoch-mean cosines in epoch order (epochs without a value skipped)."""
    return {pair: e.means for pair, e in _epochs(history).items()}


def _trend(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    x = np.linspace(0.0, 1.0, len(values))
    return float(np.polyfit(x, np.asarray(values), 1)[0])


def summarise(history: list[dict[str, Any]]) -> list[PairConflict]:
    """One summary per logged pair, in the order pairs first appear."""
    return [_pair_conflict(pair, e, _trend(e.means)) for pair, e in _epochs(history).items()]


def _interval(e: _Epochs) -> tuple[int, float, float, float]:
    """(measurements, mean, low, high) pooled over the epochs' means, counts and spreads."""
    n = np.asarray(e.counts, dtype=float)
    m, sd = np.asarray(e.means), np.asarray(e.sds)
    total = float(n.sum())
    mean = float((n * m).sum() / total)
    if total < 2:
        return int(total), mean, math.nan, math.nan
    second = float((n * (sd**2 + m**2)).sum() / total)
    var = max(0.0, second - mean**2) * total / (total - 1)  # the unbiased variance
    half = float(student_t.ppf(0.975, total - 1)) * math.sqrt(var / total)
    return int(total), mean, mean - half, mean + half


def _pair_conflict(pair: str, e: _Epochs, trend: float) -> PairConflict:
    a, _, b = pair.partition(PAIR_SEPARATOR)
    n, mean, low, high = _interval(e)
    return PairConflict(
        a=a,
        b=b,
        mean=mean,
        negative_share=float((np.asarray(e.means) < 0).mean()),
        conflict_share=float((np.asarray(e.means) < -CONFLICT_MARGIN).mean()),
        trend=trend,
        epochs=len(e.means),
        measurements=n,
        low=low,
        high=high,
    )


def cosine_matrix(names: list[str], summary: list[PairConflict]) -> np.ndarray:
    """Symmetric (T, T) matrix of mean cosines, 1 on the diagonal, NaN for unlogged pairs."""
    index = {n: i for i, n in enumerate(names)}
    m = np.full((len(names), len(names)), np.nan)
    np.fill_diagonal(m, 1.0)
    for s in summary:
        if s.a in index and s.b in index:
            m[index[s.a], index[s.b]] = m[index[s.b], index[s.a]] = s.mean
    return m


def summarise_many(histories: list[list[dict[str, Any]]]) -> list[PairConflict]:
    """One summary per pair over several runs (seeds) of the same model: the mean, its
    interval and the share of negative epochs over all their measurements and epochs,
    the mean of their trends."""
    per_run = [_epochs(h) for h in histories]  # each history read once
    order: list[str] = []
    for run in per_run:
        order.extend(pair for pair in run if pair not in order)
    out = []
    for pair in order:
        pooled = _Epochs([], [], [])
        for run in per_run:
            if pair in run:
                pooled.extend(run[pair])
        trend = float(np.mean([_trend(run[pair].means) for run in per_run if pair in run]))
        out.append(_pair_conflict(pair, pooled, trend))
    return out


@dataclass(frozen=True)
class ConflictSummary:
    """Gradient conflict over one or several runs (seeds) of one model, with the first
    run's per-epoch cosines for the plot over training."""

    pairs: list[PairConflict]
    #: per pair, (epochs, cosines) of the first run
    over_training: dict[str, tuple[list[int], list[float]]]
    #: whose training it was logged in (a comparison's analysis variant)
    variant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "pairs": [p.to_dict() for p in self.pairs]}


def cosine_epochs(history: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Per pair, the epochs with a logged cosine and the cosines."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for record in history:
        for pair, value in (record.get("cosine") or {}).items():
            if value is not None:
                epochs, values = out.setdefault(pair, ([], []))
                epochs.append(int(record["epoch"]))
                values.append(float(value))
    return out


def summarise_conflict(
    histories: list[list[dict[str, Any]]], variant: str | None = None
) -> ConflictSummary | None:
    """None when no run logged a cosine."""
    histories = [h for h in histories if h]
    pairs = summarise_many(histories)
    if not pairs:
        return None
    return ConflictSummary(pairs, cosine_epochs(histories[0]), variant)
