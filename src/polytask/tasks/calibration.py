"""Calibration of class probabilities: temperature scaling and the numbers that judge it.

Temperature scaling (Guo et al. 2017) divides a task's logits by one scalar T > 0 fitted
after training on the validation split, by L-BFGS on the negative log-likelihood of
``logits / T`` (T = exp(s), so it stays positive), with a weak prior on log T; T stays 1
unless a temperature fitted on one half of the rows helps the other half (see
:func:`fit_temperature`). The predicted class never changes
(argmax and the sign of a logit are unchanged by T); only the probabilities do.

Expected calibration error here uses 15 equal-width bins of the confidence (the
predicted probability of the positive class for a binary task, the top-class
probability for a multiclass one): ECE = Σ_b (n_b / n) |accuracy_b − confidence_b|.
Brier score: mean of (p − y)² for a binary task; for a multiclass task the mean over
rows of Σ_k (p_k − 1[y = k])², the original multi-class definition (0 is perfect, 2
the worst).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from polytask.tasks.base import Task

#: equal-width confidence bins of the ECE and the reliability diagram
BINS = 15
#: fewer labelled validation rows than this: no temperature is fitted (T stays 1)
MIN_ROWS = 20
#: the prior on log T: T within [0.37, 2.7] before any row is seen, at two deviations
PRIOR_SD = 0.5


def _nll(logits: torch.Tensor, target: torch.Tensor, binary: bool) -> torch.Tensor:
    if binary:
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
    return F.cross_entropy(logits, target.long())


def _fitted(
    z: torch.Tensor, y: torch.Tensor, binary: bool, prior_sd: float | None = PRIOR_SD
) -> float:
    """The temperature of logits ``z`` for labels ``y`` at the mode of the posterior:
    mean NLL plus the prior log T ~ N(0, PRIOR_SD²) spread over the n rows, by L-BFGS
    on log T. Thousands of rows: the NLL's minimiser; a few dozen: pulled towards 1
    (``prior_sd`` None: no prior, the NLL's minimiser)."""
    ridge = 0.0 if prior_sd is None else 1.0 / (2 * prior_sd**2 * len(y))
    s = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(s), T = 1 first
    opt = torch.optim.LBFGS([s], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _nll(z / s.exp(), y, binary) + ridge * s**2
        loss.backward()
        return loss

    opt.step(closure)
    return float(s.detach().clamp(-5.0, 5.0).exp())


def _generalises(z: torch.Tensor, y: torch.Tensor, binary: bool) -> bool:
    """Two-fold check on the validation rows: a temperature fitted on one half lowers
    the other half's NLL, summed over both ways round. On a few dozen rows a temperature
    can fit noise (T = 0.2 that doubles test ECE); this keeps T = 1 then."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    halves = order[: len(y) // 2], order[len(y) // 2 :]
    gain = 0.0
    for fit_on, judge_on in (halves, halves[::-1]):
        t = _fitted(z[fit_on], y[fit_on], binary)
        with torch.no_grad():
            gain += float(_nll(z[judge_on], y[judge_on], binary))
            gain -= float(_nll(z[judge_on] / t, y[judge_on], binary))
    return gain > 0


def fit_temperature(logits: np.ndarray, target: np.ndarray, binary: bool) -> dict[str, Any]:
    """The temperature minimising the NLL of ``logits / T`` on labelled rows (binary:
    logits (N,), targets 0/1; multiclass: logits (N, K), class codes), with the NLL
    before and after: ``{"temperature", "nll_before", "nll_after", "n"}``. T stays 1
    where it does not lower the NLL, or does not carry over between halves of the rows
    (:func:`_generalises`); None: too few rows to fit one."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(target))
    n = int(z.shape[0])
    with torch.no_grad():
        before = float(_nll(z, y, binary))
    if n < MIN_ROWS:
        return {"temperature": None, "nll_before": before, "nll_after": before, "n": n}
    t = _fitted(z, y, binary)
    with torch.no_grad():
        after = float(_nll(z / t, y, binary))
    if not np.isfinite(after) or after > before or not _generalises(z, y, binary):
        t, after = 1.0, before
    return {"temperature": t, "nll_before": before, "nll_after": after, "n": n}


def confidence(proba: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, whether the prediction it is for is right) per row: for a binary
    task P(positive) against the label being positive; for a multiclass task the top
    class's probability against the top class being the label."""
    if proba.ndim == 1:
        return proba, target.astype(bool)
    return proba.max(axis=1), proba.argmax(axis=1) == target


def reliability(proba: np.ndarray, target: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Per equal-width bin of the confidence: rows, mean confidence, observed frequency
    (empty bins are None), and the ECE they add up to."""
    conf, hit = confidence(proba, target)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=conf, minlength=bins)
    hit_sum = np.bincount(which, weights=hit.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = conf_sum / counts
        freq = hit_sum / counts
    n = int(counts.sum())
    ece = float(np.nansum(counts * np.abs(freq - mean_conf)) / n) if n else None
    return {
        "edges": edges.tolist(),
        "count": counts.tolist(),
        "confidence": [
            None if c == 0 else float(v) for c, v in zip(counts, mean_conf, strict=True)
        ],
        "frequency": [None if c == 0 else float(v) for c, v in zip(counts, freq, strict=True)],
        "ece": ece,
    }


def ece(proba: np.ndarray, target: np.ndarray) -> float | None:
    """Expected calibration error over :data:`BINS` equal-width bins (None: no rows)."""
    return reliability(proba, target)["ece"] if len(target) else None


def brier(proba: np.ndarray, target: np.ndarray) -> float | None:
    """Brier score (see the module's docstring); None without rows."""
    if not len(target):
        return None
    if proba.ndim == 1:
        return float(np.mean((proba - target) ** 2))
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(target)), target.astype(int)] = 1.0
    return float(np.mean(((proba - onehot) ** 2).sum(axis=1)))


class Temperature:
    """A task's fitted temperature (None: not fitted, as in runs trained before it) and
    whether predictions use it (``MultiTaskModel.corrections(calibrated=False)``)."""

    def __init__(self) -> None:
        self.value: float | None = None
        self.enabled = True

    @property
    def active(self) -> float | None:
        return self.value if self.enabled else None

    def apply(self, logits: np.ndarray) -> np.ndarray:
        t = self.active
        return logits if t is None else logits / t


def temperature_evidence(
    task: Task, temperature: Temperature, output: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> dict:
    """Reliability bins of ``task``'s probabilities on a split without and with its
    fitted temperature (for the report); {} where none is fitted."""
    if temperature.value is None or not mask.any():
        return {}
    proba = task.class_probabilities  # (N, 2) binary, (N, K) multiclass
    enabled = temperature.enabled
    try:
        temperature.enabled = False
        before = proba(output[mask])
        temperature.enabled = True
        after = proba(output[mask])
    finally:
        temperature.enabled = enabled
    y = target[mask]
    if before is None or after is None:
        return {}
    if before.shape[1] == 2:  # binary: bins of P(positive)
        before, after = before[:, 1], after[:, 1]
    return {
        "before": {**reliability(before, y), "brier": brier(before, y)},
        "after": {**reliability(after, y), "brier": brier(after, y)},
        "n": int(mask.sum()),
    }
