"""``predict`` and ``evaluate`` over tables too big to hold: the rows are read a row group
at a time (ahead, on a thread), predicted, and written to the output as they go.

The output is written under a temporary name beside ``--output`` and renamed onto it only
once every row is written (:func:`polytask.io.atomic_path`), so an error in the 900th
file (a column of the wrong type, a value that does not parse) leaves no partial output
behind, only one line naming the file, row group and column.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from polytask import io
from polytask.errors import PolytaskError, close_matches
from polytask.features.stream.files import ParquetSource
from polytask.features.stream.prefetch import prefetch
from polytask.metrics.scoring import score
from polytask.model import MultiTaskModel
from polytask.prepare_stream import in_piece, open_source, wants_streaming


def streams(model: MultiTaskModel, data: str | Path) -> bool:
    """Whether ``data`` is streamed: a folder or glob, or as the model's ``data``
    config says for a file of its size (``streaming``, ``stream_above_mb``)."""
    dc = model.config.data.model_copy(update={"path": str(data)})
    return model.sources is None and wants_streaming(dc)


def _tables(source: ParquetSource, columns: list[str]) -> Iterator[tuple[Any, pa.Table]]:
    """(piece, rows) in file order, read ahead on a thread."""
    return prefetch(lambda: ((p, source.read(p, columns)) for p in source.pieces))


def _check_columns(model: MultiTaskModel, source: ParquetSource, keep: list[str]) -> None:
    pre = model.preprocessor
    for name in [*pre.columns, *keep]:
        if name not in source.columns:
            what = "--keep" if name in keep and name not in pre.columns else "feature"
            near = close_matches(name, source.columns)
            hint = f" (close: {', '.join(near)})" if near else ""
            raise PolytaskError(
                f"{what} column '{name}' is missing from the data{hint}; the model needs every "
                "feature it was trained on"
            )


def _predicted(model: MultiTaskModel, table: pa.Table, keep: list[str]) -> pa.Table:
    frame = table.select(model.preprocessor.columns).to_pandas()
    preds = model.predict(frame)
    columns: dict[str, Any] = {(f"{c}_input" if c in preds.columns else c): table[c] for c in keep}
    for name in preds.columns:
        columns[name] = pa.array(preds[name].to_numpy())
    return pa.table(columns)


def predict_file(
    model: MultiTaskModel, data: str | Path, output: str | Path, keep: list[str] | None = None
) -> int:
    """Predict every row of ``data`` into ``output`` (.parquet or .csv); returns the rows."""
    if any(t.dense for t in model.tasks):
        raise PolytaskError("per-pixel tasks cannot be predicted from a streamed table yet")
    keep = list(keep or [])
    source = open_source(str(data))
    _check_columns(model, source, keep)
    columns = list(dict.fromkeys([*model.preprocessor.columns, *keep]))
    out = Path(output)
    rows = 0
    with io.atomic_path(out) as tmp:
        writer: Any = None
        try:
            for piece, table in _tables(source, columns):
                try:
                    result = _predicted(model, table, keep)
                except PolytaskError as err:
                    raise in_piece(source, piece, err) from None
                if writer is None:
                    writer = _writer(tmp, out, result.schema)
                writer.write_table(result.cast(writer.schema))
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
    return rows


def _writer(tmp: Path, out: Path, schema: pa.Schema) -> Any:
    if out.suffix.lower() == ".parquet":
        return pq.ParquetWriter(tmp, schema)
    import pyarrow.csv as pcsv

    return pcsv.CSVWriter(tmp, schema)


def evaluate_file(model: MultiTaskModel, data: str | Path) -> dict[str, dict[str, Any]]:
    """``evaluate``'s scores over every row of ``data``, read a row group at a time."""
    source = open_source(str(data))
    present = [t for t in model.tasks if all(c in source.columns for c in t.columns)]
    if not present:
        return {}
    _check_columns(model, source, [])
    index = [model.tasks.index(t) for t in present]
    labels = list(dict.fromkeys(c for t in present for c in t.columns))
    columns = list(dict.fromkeys([*model.preprocessor.columns, *labels]))
    outs: list[list[np.ndarray]] = [[] for _ in present]
    targets: list[list[torch.Tensor]] = [[] for _ in present]
    masks: list[list[torch.Tensor]] = [[] for _ in present]
    for piece, table in _tables(source, columns):
        try:
            frame = table.to_pandas()
            raw = model.predict_raw(frame)
            for k, (t, i) in enumerate(zip(present, index, strict=True)):
                y, m = t.encode(t.labels_of(frame))
                outs[k].append(raw[i])
                targets[k].append(y)
                masks[k].append(m)
        except PolytaskError as err:
            raise in_piece(source, piece, err) from None
    return score(
        present,
        [torch.from_numpy(np.concatenate(o)) for o in outs],
        [torch.cat(y) for y in targets],
        [torch.cat(m) for m in masks],
    )
