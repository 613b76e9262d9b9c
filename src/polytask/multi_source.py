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
from polytask.features.io import read_table
from polytask.features.preprocess import Preprocessor
from polytask.features.sources import MultiSourceTable
from polytask.features.splits import split_frame
from polytask.tasks import Task

SPLITS = ("train", "validation", "test")


@dataclass
class PreparedSources:
    preprocessors: list[Preprocessor]
    tables: dict[str, MultiSourceTable]
    rows: dict[str, dict[str, int]]
    feature_types: dict[str, dict[str, str]]


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


def prepare_sources(cfg: RunConfig, tasks: list[Task], feature_types: Any) -> PreparedSources:
    from polytask.api import require_columns
    from polytask.encoders.build import text_options

    by_name = {t.name: t for t in tasks}
    dense = [t for t in tasks if t.dense]
    if dense:
        raise PolytaskError(
            f"task '{dense[0].name}' predicts per pixel; per-pixel tasks cannot share a model "
            "with other sources yet: train them in a run of their own"
        )
    seed = cfg.training.seed
    parts: dict[str, list[TensorTable]] = {s: [] for s in SPLITS}
    pres, rows, types_of = [], {}, {}
    for source in cfg.sources:
        dc = source.data
        where = f"source '{source.name}'"
        if not dc.path:
            raise PolytaskError(f"{where} has no data.path; give each source its data file")
        data = read_table(dc.path)
        given_val = read_table(dc.validation) if dc.validation else None
        given_test = read_table(dc.test) if dc.test else None
        own = [by_name[t.name] for t in source.tasks]
        label_cols = {c for t in own for c in t.columns}
        require_columns(data, sorted(label_cols), f"{where}: label")
        train, val_split, test_split = split_frame(
            data,
            dc.validation_fraction,
            dc.test_fraction,
            seed,
            draw_validation=given_val is None,
            draw_test=given_test is None,
        )
        val = given_val if given_val is not None else val_split
        tst = given_test if given_test is not None else test_split
        types = feature_types(source.features, train, label_cols)
        for t in own:
            t.fit(t.labels_of(train))
        fc = source.features
        pre = Preprocessor.fit(
            train,
            types,
            fc.max_categories,
            fc.min_category_count,
            fc.embedding_dim,
            fc.max_embedding_dim,
            text_options=text_options(cfg.model),
        )
        pres.append(pre)
        types_of[source.name] = types
        frames = {"train": train, "validation": val, "test": tst}
        rows[source.name] = {k: 0 if f is None else len(f) for k, f in frames.items()}
        for split, frame in frames.items():
            if frame is None:
                frame = train.iloc[:0]
            else:
                pre.check_columns(frame)
                require_columns(frame, sorted(label_cols), f"{where}: {split} label")
            parts[split].append(source_table(tasks, own, pre, frame))
    index = [[tasks.index(by_name[t.name]) for t in s.tasks] for s in cfg.sources]
    method, temperature = cfg.sampling.method, cfg.sampling.temperature
    tables = {split: MultiSourceTable(parts[split], index, method, temperature) for split in SPLITS}
    return PreparedSources(pres, tables, rows, types_of)
