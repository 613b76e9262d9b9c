"""Gradient conflict over training, per pair of tasks.

The trainer logs each epoch's mean pairwise cosine similarity of the task gradients
under ``record["cosine"]`` as ``{"a~b": value}`` (see ``training/balance_log.py``). Per
pair this module gives the mean over epochs, the share of epochs with a negative cosine
(the gradients pull the shared layers apart), and the trend: the least-squares slope of
the cosine against training progress (0 at the first logged epoch, 1 at the last), i.e.
how much the cosine changed over training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PAIR_SEPARATOR = "~"


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

    @property
    def pair(self) -> str:
        return f"{self.a}{PAIR_SEPARATOR}{self.b}"

    @property
    def label(self) -> str:
        if self.mean < 0:
            return "conflicting"
        if self.negative_share >= 0.25:
            return "often conflicting"
        return "aligned" if self.mean > 0.1 else "near orthogonal"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pair": self.pair, "label": self.label}


def cosine_series(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per pair, its epoch-mean cosines in epoch order (epochs without a value skipped)."""
    out: dict[str, list[float]] = {}
    for record in history:
        for pair, value in (record.get("cosine") or {}).items():
            if value is not None:
                out.setdefault(pair, []).append(float(value))
    return out


def _trend(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    x = np.linspace(0.0, 1.0, len(values))
    return float(np.polyfit(x, np.asarray(values), 1)[0])


def summarise(history: list[dict[str, Any]]) -> list[PairConflict]:
    """One summary per logged pair, in the order pairs first appear."""
    return [
        _pair_conflict(pair, np.asarray(values), _trend(values))
        for pair, values in cosine_series(history).items()
    ]


def _pair_conflict(pair: str, values: np.ndarray, trend: float) -> PairConflict:
    a, _, b = pair.partition(PAIR_SEPARATOR)
    return PairConflict(
        a=a,
        b=b,
        mean=float(values.mean()),
        negative_share=float((values < 0).mean()),
        trend=trend,
        epochs=len(values),
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
    """One summary per pair over several runs (seeds) of the same model: the mean and the
    share of negative epochs over all their epochs, the mean of their trends."""
    series = [cosine_series(h) for h in histories]  # each history read once
    order: list[str] = []
    for run in series:
        order.extend(pair for pair in run if pair not in order)
    return [
        _pair_conflict(
            pair,
            np.concatenate([np.asarray(run[pair]) for run in series if pair in run]),
            float(np.mean([_trend(run[pair]) for run in series if pair in run])),
        )
        for pair in order
    ]


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
