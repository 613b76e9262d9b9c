"""Corrections fitted once training ends: each task kind's own (a temperature for class
probabilities, split-conformal intervals for numbers; ``Task.corrections``), fitted on
the validation split's outputs, with their evidence on the test split for the report.

What is fitted lives in each task's state (``preprocessing.json``), so a loaded run
predicts with it; the summary returned here is the run's ``calibration.json``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from polytask.architectures import MultiTaskNet
from polytask.errors import PolytaskError
from polytask.metrics.scoring import split_outputs
from polytask.tasks import Task


def fit_corrections(
    net: MultiTaskNet,
    tasks: list[Task],
    tables: dict[str, Any],
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Fit every task's corrections on ``tables["validation"]``; returns
    ``{"fitted_on": "validation", "evidence_on": SPLIT, "tasks": {task: {...}}}`` with
    each task's fitted values and, under ``"evidence"``, what the report shows of them
    on the test split (else the validation split). {} without a validation split."""
    if not any(t.corrections for t in tasks):
        return {}
    val, test = tables.get("validation"), tables.get("test")
    if val is None:
        return {}
    outs, targets, masks = _arrays(net, val, batch_size, device)
    # a task whose raw output others are composed from keeps its own: a temperature on
    # it would make its probability disagree with the product an entire-space task gives
    parents = {p for t in tasks for p in t.composes_with()}
    fitted: dict[str, Any] = {}
    for t, o, y, m in zip(tasks, outs, targets, masks, strict=True):
        summary = t.fit_corrections(o, y, m) if m.any() and t.name not in parents else {}
        if summary:
            fitted[t.name] = {"kind": t.corrections[0], **summary}
    if not fitted:
        return {}
    split = "validation" if test is None else "test"
    if test is not None:
        outs, targets, masks = _arrays(net, test, batch_size, device)
    for t, o, y, m in zip(tasks, outs, targets, masks, strict=True):
        if t.name in fitted:
            fitted[t.name]["evidence"] = t.correction_evidence(o, y, m)
    return {"fitted_on": "validation", "evidence_on": split, "tasks": fitted}


def _arrays(net: MultiTaskNet, table: Any, batch_size: int, device: torch.device) -> tuple:
    outs, targets, masks = split_outputs(net, table, batch_size, device)
    return (
        [o.numpy() for o in outs],
        [y.cpu().numpy() for y in targets],
        [m.cpu().numpy().astype(bool) for m in masks],
    )


@contextlib.contextmanager
def corrected(tasks: list[Task], calibrated: bool, coverage: float | None) -> Iterator[None]:
    """Inside the block ``tasks`` predict with their fitted temperatures only with
    ``calibrated``, and intervals at ``coverage`` (None: each task's ``intervals``
    option); the defaults come back afterwards. Not for threads that predict with other
    settings at the same time."""
    if coverage is not None and not 0 < coverage < 1:
        raise PolytaskError(f"`coverage` is {coverage}; give a share between 0 and 1, e.g. 0.9")
    try:
        applied = [t.use_corrections(calibrated, coverage) for t in tasks]
        if coverage is not None and not any(applied):
            raise PolytaskError(
                "`coverage` sets the intervals of regression and count tasks, but no task "
                "of this run has fitted intervals (a run trained before them, or "
                "`intervals: null`); train it again for intervals"
            )
        yield
    finally:
        for t in tasks:
            t.use_corrections()
