"""Preparing a multi-source run: each source's table is split, its feature types found
and its preprocessing fitted on its own training rows; every split becomes a
:class:`~polytask.features.sources.MultiSourceTable` with all tasks' targets. The result
is the same :class:`~polytask.prepare.PreparedData` a single table gives."""

from __future__ import annotations

import pandas as pd

from polytask.config import RunConfig
from polytask.features.batches import TensorTable
from polytask.features.preprocess import Preprocessor
from polytask.features.sources import MultiSourceTable
from polytask.prepare import (
    SPLITS,
    PreparedData,
    Table,
    check_sources,
    fit_source,
    read_frames,
)
from polytask.tasks import Task


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


def prepare_sources(cfg: RunConfig, tasks: list[Task]) -> PreparedData:
    """Every source read, split and fitted on its own training rows; each split becomes
    one :class:`MultiSourceTable` over all sources, with every task's targets."""
    check_sources(cfg, tasks)
    by_name = {t.name: t for t in tasks}
    parts: dict[str, list[TensorTable]] = {s: [] for s in SPLITS}
    pres: list[Preprocessor] = []
    rows: list[dict[str, int]] = []
    types_of: list[dict[str, str]] = []
    read: list[pd.DataFrame | None] = []
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
        types_of.append(fitted.feature_types)
        rows.append(fitted.rows)
        train = fitted.frames["train"]
        assert train is not None  # fit_source always draws a training split
        for split, frame in fitted.frames.items():
            empty = train.iloc[:0] if frame is None else frame
            parts[split].append(source_table(tasks, own, fitted.preprocessor, empty))
    index = [[tasks.index(by_name[t.name]) for t in s.tasks] for s in cfg.sources]
    method, temperature = cfg.sampling.method, cfg.sampling.temperature
    tables: dict[str, Table | None] = {
        split: MultiSourceTable(parts[split], index, method, temperature) for split in SPLITS
    }
    names = [s.name for s in cfg.sources]
    return PreparedData(pres, types_of, rows, tables, tuple(read), names)
