"""A table too big to hold, prepared for training without ever holding it.

One pass over the data (row groups read ahead on a thread) splits the rows by a hash
(:mod:`polytask.features.stream.splits`), counts each split's rows per row group, fits
the preprocessing on the training rows (:mod:`polytask.features.stream.fit`) and keeps the
training labels for the tasks' own fit. Each split is then a
:class:`~polytask.features.stream.table.StreamingTable` that reads and encodes its rows
again on every pass. The result is the same :class:`~polytask.prepare.PreparedData` an
in-memory table gives, so training, checkpoints and the run directory are unchanged.

Feature types are inferred from the first training rows (up to ``data.sample_rows``) as
they would be from a DataFrame; override them with ``features.numeric`` etc. where
the first rows are not typical. The tasks are fitted on every training label (labels
only: a few bytes a row).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from polytask.config import DataConfig, RunConfig
from polytask.encoders.build import text_options
from polytask.encoders.numeric import numeric_bins
from polytask.errors import PolytaskError, close_matches
from polytask.features.cyclical import cyclical_periods
from polytask.features.stream import arrow, files
from polytask.features.stream.encode import ArrowEncoder
from polytask.features.stream.files import ParquetSource, Piece
from polytask.features.stream.fit import FitOptions, FitPass
from polytask.features.stream.prefetch import prefetch
from polytask.features.stream.splits import TRAIN, key_hashes, split_codes
from polytask.features.stream.table import Chunk, SplitRows, StreamingTable
from polytask.prepare import PreparedData, Table, feature_types
from polytask.tasks import Task

SPLIT_NAMES = ("train", "validation", "test")


def at(path: str, root: Path | None) -> str:
    """``path``, relative paths (and globs) taken from ``root`` when one is given."""
    return path if root is None or Path(path).is_absolute() else str(root / path)


def wants_streaming(dc: DataConfig, root: Path | None = None) -> bool:
    """``data.streaming``: true, false, or auto (the data files are larger on disk than
    ``data.stream_above_mb``)."""
    if dc.streaming != "auto":
        return dc.streaming == "true"
    if not dc.path:
        return False
    return files.size_on_disk(at(dc.path, root)) > dc.stream_above_mb * 2**20


_KEEP: list[Any] = []  # temporary Parquet copies of streamed CSVs live as long as the process


def open_source(path: str) -> ParquetSource:
    """The Parquet files ``path`` names, or a CSV streamed once into a temporary one."""
    p = Path(path)
    if not files.is_many(path) and not p.exists():
        raise PolytaskError(f"data file '{p}' does not exist; check the path")
    if files.is_many(path) or files.is_parquet(p):
        return files.open_parquet(path)
    if not p.name.lower().endswith(files.CSV_SUFFIXES):
        raise PolytaskError(f"'{p}': streaming reads .parquet files (or a folder of them) or a CSV")
    if p.stat().st_size == 0:
        raise PolytaskError(f"data file '{p}' is empty; it needs a header row and data rows")
    folder = tempfile.TemporaryDirectory(prefix="polytask-csv-")
    _KEEP.append(folder)
    copy = Path(folder.name) / (p.name.split(".")[0] + ".parquet")
    files.csv_to_parquet(p, copy)
    return files.open_parquet(copy)


def _require(source: ParquetSource, names: list[str], what: str, where: str) -> None:
    for name in names:
        if name not in source.columns:
            near = close_matches(name, source.columns)
            hint = f"; close matches: {', '.join(repr(n) for n in near)}" if near else ""
            raise PolytaskError(f"{what} column '{name}' is not in {where}{hint}")


@dataclass
class Splitter:
    """Each row's split, from a hash of its position or of ``data.split_key``."""

    dc: DataConfig
    seed: int
    draw_validation: bool
    draw_test: bool

    def codes(self, source: ParquetSource, piece: Piece, table: pa.Table) -> np.ndarray:
        key = self.dc.split_key
        if key is None:
            keys = np.arange(piece.offset, piece.offset + piece.rows, dtype=np.uint64)
        else:
            keys = key_hashes(table[key], key, f"data file {source.where(piece)}: ")
        dc = self.dc
        return split_codes(
            keys,
            self.seed,
            dc.validation_fraction,
            dc.test_fraction,
            self.draw_validation,
            self.draw_test,
        )


def in_piece(source: ParquetSource, piece: Piece, err: PolytaskError) -> PolytaskError:
    """A user error while reading a row group, with the file and row group named."""
    text = str(err)
    return PolytaskError(
        text if "data file" in text else f"data file {source.where(piece)}: {text}"
    )


@dataclass
class FitResult:
    rows: list[list[int]]  # per piece: rows of train, validation, test
    labels: pa.Table
    fitted: FitPass
    types: dict[str, str] = field(default_factory=dict)


def _infer_types(
    cfg: RunConfig, source: ParquetSource, splitter: Splitter, labels: set[str]
) -> dict[str, str]:
    """Feature types from the first training rows (at most ``data.sample_rows``)."""
    parts, held = [], 0
    for piece in source.pieces:
        table = source.read(piece, source.columns)
        table = table.filter(pa.array(splitter.codes(source, piece, table) == TRAIN))
        parts.append(table)
        held += table.num_rows
        if held >= min(cfg.data.sample_rows, 50_000):
            break
    head = pa.concat_tables(parts).to_pandas()
    return feature_types(cfg.features, head, labels)


def fit_pass(
    cfg: RunConfig,
    source: ParquetSource,
    splitter: Splitter,
    types: dict[str, str],
    labels: list[str],
) -> FitResult:
    """One pass: per-piece split counts, the preprocessing's statistics, the training labels."""
    fc = cfg.features
    options = FitOptions(
        fc.max_categories,
        fc.min_category_count,
        fc.embedding_dim,
        fc.max_embedding_dim,
        text_options(cfg.model),
        cfg.data.sample_rows,
        cfg.training.seed,
        dict(fc.hash_buckets),
        fc.max_items,
        cyclical_periods(fc.cyclical, types),
        numeric_bins(cfg.model.numeric_encoding, cfg.model.numeric_encoding_options),
    )
    fitted = FitPass(types, options)
    key = [cfg.data.split_key] if cfg.data.split_key else []
    columns = list(dict.fromkeys([*types, *labels, *key]))

    def read() -> Any:
        for piece in source.pieces:
            yield piece, source.read(piece, columns)

    rows, kept = [], []
    hashed = [c for c in fc.hash_buckets if c in types]
    for piece, table in prefetch(read):
        try:
            for name in hashed:  # every row of the row group, numbered within it
                arrow.check_ids(arrow.plain(table[name]), name)
            codes = splitter.codes(source, piece, table)
            rows.append([int((codes == s).sum()) for s in range(3)])
            train = codes == TRAIN
            positions = np.arange(piece.offset, piece.offset + piece.rows)[train]
            table = table.filter(pa.array(train))
            fitted.add(table.select(list(types)), positions)
        except PolytaskError as err:
            raise in_piece(source, piece, err) from None
        kept.append(table.select(labels))
    return FitResult(rows, pa.concat_tables(kept), fitted, types)


def encoder_for(tasks: list[Task], pre_encoder: ArrowEncoder) -> Any:
    """Arrow rows -> a Chunk: the features from Arrow, each task's labels through its own
    ``encode`` (a label column or two, as a pandas Series, so no kind needs a second
    encoder)."""
    label_cols = list(dict.fromkeys(c for t in tasks for c in [*t.columns, *_weight(t)]))

    def encode(table: pa.Table) -> Chunk:
        features = pre_encoder.encode(table)
        frame = table.select(label_cols).to_pandas()
        targets, masks = [], []
        for t in tasks:
            y, m = t.encode(t.labels_of(frame))
            targets.append(y)
            masks.append(m)
        found = [t.weights_of(frame) for t in tasks]
        weights = [None if w is None else torch.from_numpy(w) for w in found]
        return Chunk(
            features, targets, masks, weights if any(w is not None for w in weights) else []
        )

    return encode


def _split_rows(
    name: str,
    source: ParquetSource,
    others: dict[str, ParquetSource],
    splitter: Splitter,
    result: FitResult,
    columns: list[str],
) -> SplitRows:
    """Which rows a split reads: an explicit file's every row, else the data's rows the
    hash puts in it."""
    if name in others:
        other = others[name]
        _require(other, columns, "feature or label", f"the {name} data")
        return SplitRows(other, columns, other.pieces, [p.rows for p in other.pieces])
    s = SPLIT_NAMES.index(name)

    def select(piece: Piece, table: pa.Table) -> np.ndarray:
        return splitter.codes(source, piece, table) == s

    key = [splitter.dc.split_key] if splitter.dc.split_key else []
    read = list(dict.fromkeys([*columns, *key]))
    return SplitRows(source, read, source.pieces, [r[s] for r in result.rows], select)


def _weight(task: Task) -> list[str]:
    """The task's sample-weight column, if it has one."""
    return [task.options.weight] if task.options.weight else []


def prepare_stream(
    cfg: RunConfig, tasks: list[Task], rank: int = 0, world: int = 1, root: Path | None = None
) -> PreparedData:
    """The run's data as streamed splits (see the module docstring); relative paths start
    at ``root`` where one is given."""
    dc = cfg.data
    if not dc.path:
        raise PolytaskError("no training data given; set data.path (a CSV or Parquet file)")
    source = open_source(at(dc.path, root))
    given = {"validation": dc.validation, "test": dc.test}
    others = {k: open_source(at(v, root)) for k, v in given.items() if v}
    label_cols = list(dict.fromkeys(c for t in tasks for c in t.columns))
    weight_cols = list(dict.fromkeys(c for t in tasks for c in _weight(t)))
    _require(source, label_cols, "label", f"'{dc.path}'")
    _require(source, weight_cols, "sample-weight", f"'{dc.path}'")
    if dc.split_key:
        _require(source, [dc.split_key], "split key", f"'{dc.path}'")
    splitter = Splitter(dc, cfg.training.seed, "validation" not in others, "test" not in others)
    types = _infer_types(cfg, source, splitter, {*label_cols, *weight_cols})
    result = fit_pass(cfg, source, splitter, types, label_cols)
    frame = result.labels.to_pandas()
    for t in tasks:
        t.fit(t.labels_of(frame))
    del frame
    pre = result.fitted.preprocessor()
    encode = encoder_for(tasks, ArrowEncoder(pre))
    columns = list(dict.fromkeys([*pre.columns, *label_cols, *weight_cols]))
    tables: dict[str, Table | None] = {}
    counts: dict[str, int] = {}
    for name in SPLIT_NAMES:
        split = _split_rows(name, source, others, splitter, result, columns)
        table = StreamingTable(split, encode, rank, world, dc.shuffle_rows, n_tasks=len(tasks))
        counts[name] = len(table)
        tables[name] = table if len(table) else None
    if counts["train"] < 2:
        raise PolytaskError(
            f"the data has {counts['train']} training rows after the split; add rows or "
            "lower data.validation_fraction / data.test_fraction"
        )
    text = "|".join(s.fingerprint() for s in (source, *others.values()))
    text += f"|{dc.split_key}|{dc.validation_fraction}|{dc.test_fraction}"
    fingerprint = hashlib.sha256(text.encode()).hexdigest()
    return PreparedData([pre], [types], [counts], tables, (), fingerprint=fingerprint)
