"""One data source from files to fitted preprocessing: read its data, split it, find the
feature types, fit the tasks and the preprocessing on the training rows, and turn each
split into tensors. A single-source run does this once; a multi-source run
(:mod:`polytask.multi_source`) once per source. Both end in one :class:`PreparedData`,
whose per-source lists have one entry for a single table."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
import torch

from polytask.config import DataConfig, FeaturesConfig, ModelConfig, RunConfig
from polytask.encoders.build import text_options
from polytask.encoders.numeric import numeric_bins
from polytask.errors import PolytaskError, close_matches
from polytask.features.batches import TensorTable
from polytask.features.cyclical import cyclical_periods, inferred_period
from polytask.features.infer import infer_type, looks_like_row_id
from polytask.features.io import read_table
from polytask.features.preprocess import Preprocessor
from polytask.features.sources import MultiSourceTable
from polytask.features.splits import split_frame, split_frame_by_key
from polytask.features.stream.table import StreamingTable
from polytask.tasks import Task

SPLITS = ("train", "validation", "test")

#: one split as the trainer reads it: a single table's tensors, every source's, or a
#: streamed table's row groups
Table = TensorTable | MultiSourceTable | StreamingTable


#: a table with at most this many columns has them listed when a name has no near miss
LISTED_COLUMNS = 15


def require_columns(df: pd.DataFrame, names: list[str], what: str) -> None:
    """Each name is a column of ``df``; else an error naming ``what`` named it (a key,
    which the CLI shows as its flag), and the near misses, or the columns of a narrow
    table when there is none."""
    for name in names:
        if name not in df.columns:
            near = close_matches(name, df.columns)
            if near:
                hint = f"; close matches: {', '.join(repr(n) for n in near)}"
            elif len(df.columns) <= LISTED_COLUMNS:
                hint = f"; its columns are {', '.join(repr(str(c)) for c in df.columns)}"
            else:
                hint = ""
            raise PolytaskError(f"{what} column '{name}' is not in the data{hint}")


def feature_types(fc: FeaturesConfig, train: pd.DataFrame, label_cols: set[str]) -> dict[str, str]:
    """Each feature column's type: the config's overrides, else inferred from training."""
    overrides = {
        **dict.fromkeys(fc.numeric, "numeric"),
        **dict.fromkeys(fc.categorical, "categorical"),
        **dict.fromkeys(fc.boolean, "boolean"),
        **dict.fromkeys(fc.text, "text"),
        **dict.fromkeys(fc.image, "image"),
        **dict.fromkeys(fc.hash_buckets, "categorical"),
        **dict.fromkeys(fc.multi_hot, "multi_hot"),
    }
    require_columns(train, list(fc.include or []), "features.include")
    require_columns(train, list(fc.drop), "features.drop")
    for kind in ("numeric", "categorical", "boolean", "text", "image", "cyclical"):
        require_columns(train, list(getattr(fc, kind)), f"features.{kind}")
    dropped = sorted(label_cols & set(fc.drop))
    if dropped:
        raise PolytaskError(
            f"column '{dropped[0]}' is a task's label and is also in features.drop (--drop); "
            "the two contradict: a label is never a feature, so leave it out of drop, or "
            "remove its task"
        )
    clash = label_cols & set(fc.include or [])
    if clash:
        raise PolytaskError(
            f"column '{sorted(clash)[0]}' is a task's label and cannot also be a feature"
        )
    columns = (
        fc.include
        if fc.include is not None
        else [c for c in train.columns if c not in label_cols and c not in fc.drop]
    )
    columns = [c for c in columns if c not in fc.drop]
    types: dict[str, str] = {}
    for col in columns:
        kind = overrides.get(col) or infer_type(train[col])
        if col in fc.cyclical or (
            fc.infer_cyclical
            and col not in overrides
            and kind == "numeric"
            and inferred_period(col, train[col])
        ):
            kind = "cyclical"
        if kind == "numeric" and col not in overrides and looks_like_row_id(train[col]):
            warnings.warn(
                f"feature column '{col}' looks like a row id (1, 2, 3, ...); "
                "if it is one, add it to features.drop",
                UserWarning,
                stacklevel=4,
            )
        types[col] = kind
    if not types:
        raise PolytaskError(
            "no feature columns are left to learn from; the data needs columns besides the "
            "labels (check features.include / features.drop)"
        )
    return types


def read_frames(
    dc: DataConfig,
    data: pd.DataFrame | None = None,
    validation: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    source: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """The frames given, else the files of ``dc``: (data, validation, test)."""
    if data is None:
        if not dc.path:
            if source is not None:
                raise PolytaskError(
                    f"source '{source}' has no data.path; give each source its data file"
                )
            raise PolytaskError("no training data given; set data.path (a CSV or Parquet file)")
        data = read_table(dc.path)
    if validation is None and dc.validation:
        validation = read_table(dc.validation)
    if test is None and dc.test:
        test = read_table(dc.test)
    return data, validation, test


def check_sources(cfg: RunConfig, tasks: list[Task]) -> None:
    """A multi-source model's tasks all read vectors: per-pixel tasks need a model of
    their own (checked before any data is read, and again when a run is loaded)."""
    by_name = {t.name: t for t in tasks}
    for source in cfg.sources:
        dense = [t.name for t in source.tasks if by_name[t.name].dense]
        if dense:
            raise PolytaskError(
                f"source '{source.name}': task '{dense[0]}' predicts per pixel; per-pixel "
                "tasks cannot share a model with other sources yet: train them in a run of "
                "their own"
            )


@dataclass
class FittedSource:
    preprocessor: Preprocessor
    feature_types: dict[str, str]
    #: the train, validation and test rows (None where a split has none)
    frames: dict[str, pd.DataFrame | None]

    @property
    def rows(self) -> dict[str, int]:
        return {k: 0 if f is None else len(f) for k, f in self.frames.items()}


def fit_source(
    model: ModelConfig,
    dc: DataConfig,
    fc: FeaturesConfig,
    tasks: list[Task],
    frames: tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None],
    seed: int,
    where: str = "",
) -> FittedSource:
    """Split ``frames`` (data, validation, test) as ``dc`` says, then fit ``tasks`` and the
    preprocessing on the training rows; ``where`` prefixes error messages."""
    data, validation, test = frames
    weights = [t.options.weight for t in tasks if t.options.weight]
    label_cols = {c for t in tasks for c in t.columns} | set(weights)
    require_columns(data, [c for t in tasks for c in t.columns], f"{where}label")
    require_columns(data, weights, f"{where}sample-weight")
    split = split_frame if dc.split_key is None else partial(split_frame_by_key, key=dc.split_key)
    train, val_split, test_split = split(
        data,
        validation_fraction=dc.validation_fraction,
        test_fraction=dc.test_fraction,
        seed=seed,
        draw_validation=validation is None,
        draw_test=test is None,
    )
    val = validation if validation is not None else val_split
    tst = test if test is not None else test_split
    types = feature_types(fc, train, label_cols)
    for t in tasks:
        t.fit(t.labels_of(train))
    pre = Preprocessor.fit(
        train,
        types,
        fc.max_categories,
        fc.min_category_count,
        fc.embedding_dim,
        fc.max_embedding_dim,
        text_options=text_options(model),
        hash_buckets=fc.hash_buckets,
        max_items=fc.max_items,
        cyclical=cyclical_periods(fc.cyclical, types),
        bins=numeric_bins(model.numeric_encoding, model.numeric_encoding_options),
    )
    for name, frame in (("validation", val), ("test", tst)):
        if frame is not None:
            pre.check_columns(frame)
            require_columns(frame, sorted(label_cols), f"{where}{name} label")
    return FittedSource(pre, types, {"train": train, "validation": val, "test": tst})


def task_table(
    tasks: list[Task], pre: Preprocessor, df: pd.DataFrame, weighted: bool = False
) -> TensorTable:
    """A split as tensors: the features and every task's encoded targets and masks;
    ``weighted`` (the training split): the tasks' sample weights too."""
    targets, masks = [], []
    for t in tasks:
        y, m = t.encode(t.labels_of(df))
        targets.append(y)
        masks.append(m)
    table = TensorTable(pre.transform(df), targets, masks)
    if weighted:
        found = [t.weights_of(df) for t in tasks]
        table.weights = [None if w is None else torch.from_numpy(w) for w in found]
    return table


@dataclass
class PreparedData:
    """A run's data ready to train on: per source (one for a single table) its fitted
    preprocessing, feature types and row counts; each split's table; the frames read."""

    preprocessors: list[Preprocessor]
    feature_types: list[dict[str, str]]
    rows: list[dict[str, int]]
    tables: dict[str, Table | None]
    #: every frame read, source by source (for the run's data fingerprint)
    frames: tuple[pd.DataFrame | None, ...]
    #: the source names of a multi-source run; None for a single table
    names: list[str] | None = None
    #: what resuming checks instead of hashing frames (a streamed table's files)
    fingerprint: str | None = None

    def info(self) -> dict[str, Any]:
        """``rows`` and ``feature_types`` as a run's info file holds them: flat for a
        single table, keyed by source name otherwise (the run-directory format)."""
        if self.names is None:
            return {"rows": self.rows[0], "feature_types": self.feature_types[0]}
        return {
            "rows": dict(zip(self.names, self.rows, strict=True)),
            "feature_types": dict(zip(self.names, self.feature_types, strict=True)),
        }

    def split(self, name: str) -> Table | None:
        """The split's table, or None where it has no rows."""
        table = self.tables.get(name)
        return table if table is not None and len(table) else None


def prepare_single(
    cfg: RunConfig,
    tasks: list[Task],
    data: pd.DataFrame | None,
    validation: pd.DataFrame | None,
    test: pd.DataFrame | None,
) -> PreparedData:
    """Read and split a single table (the frames given, else the config's files), fit the
    tasks and the preprocessing on the training rows, and turn each split into tensors."""
    frames = read_frames(cfg.data, data, validation, test)
    fitted = fit_source(cfg.model, cfg.data, cfg.features, tasks, frames, cfg.training.seed)
    pre = fitted.preprocessor
    tables: dict[str, Table | None] = {
        split: task_table(tasks, pre, frame, weighted=split == "train")
        if frame is not None and len(frame)
        else None
        for split, frame in fitted.frames.items()
    }
    return PreparedData([pre], [fitted.feature_types], [fitted.rows], tables, frames)
