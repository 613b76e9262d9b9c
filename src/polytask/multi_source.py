"""Preparing a multi-source run: each source's table is split, its feature types found
and its preprocessing fitted on its own training rows; every split becomes a
:class:`~polytask.features.sources.MultiSourceTable` with all tasks' targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from polytask.config import RunConfig
from polytask.errors import PolytaskError
from polytask.features.batches import TensorTable
from polytask.features.preprocess import Preprocessor
from polytask.features.sources import MultiSourceTable
from polytask.prepare import SPLITS, fit_source, read_frames
from polytask.tasks import Task


@dataclass
class PreparedSources:
    preprocessors: list[Preprocessor]
    tables: dict[str, MultiSourceTable]
    rows: dict[str, dict[str, int]]
    feature_types: dict[str, dict[str, str]]
    #: every frame read, source by source (for the run's data fingerprint)
    frames: tuple[pd.DataFrame | None, ...] = ()


def source_table(
    tasks: list[Task], own: list[Task], pre: Preprocessor, df: pd.DataFrame
) -> TensorTable:
    """Rows of one source with every task's targets: its own tasks' labels, and the
    other tasks unlabelled (placeholder targets, all-False masks)."""
    targets, masks = [], []
    for t in tasks:
        if t in own:
            y, m = t.encode(t.labels_of(df))
        else:
            empty = pd.DataFrame({c: pd.Series([None] * len(df), dtype=object) for c in t.columns})
            y, m = t.encode(t.labels_of(empty))
        targets.append(y)
        masks.append(m)
    return TensorTable(pre.transform(df), targets, masks)


def prepare_sources(cfg: RunConfig, tasks: list[Task]) -> PreparedSources:
    by_name = {t.name: t for t in tasks}
    dense = [t for t in tasks if t.dense]
    if dense:
        raise PolytaskError(
            f"task '{dense[0].name}' predicts per pixel; per-pixel tasks cannot share a model "
            "with other sources yet: train them in a run of their own"
        )
    parts: dict[str, list[TensorTable]] = {s: [] for s in SPLITS}
    pres: list[Preprocessor] = []
    rows: dict[str, Any] = {}
    types_of: dict[str, Any] = {}
    read: list[Any] = []
    for source in cfg.sources:
        own = [by_name[t.name] for t in source.tasks]
        frames = read_frames(source.data, source=source.name)
        read += frames
        fitted = fit_source(
            cfg.model,
            source.data,
            source.features,
            own,
            frames,
            cfg.training.seed,
            where=f"source '{source.name}': ",
        )
        pres.append(fitted.preprocessor)
        types_of[source.name] = fitted.feature_types
        rows[source.name] = fitted.rows
        train = fitted.frames["train"]
        assert train is not None  # fit_source always draws a training split
        for split, frame in fitted.frames.items():
            empty = train.iloc[:0] if frame is None else frame
            parts[split].append(source_table(tasks, own, fitted.preprocessor, empty))
    index = [[tasks.index(by_name[t.name]) for t in s.tasks] for s in cfg.sources]
    method, temperature = cfg.sampling.method, cfg.sampling.temperature
    tables = {split: MultiSourceTable(parts[split], index, method, temperature) for split in SPLITS}
    return PreparedSources(pres, tables, rows, types_of, tuple(read))
