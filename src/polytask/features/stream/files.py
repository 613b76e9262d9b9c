"""Where a streamed table's rows live: Parquet files (one file, a folder of them or a glob)
read one row group at a time, or a CSV converted once into a temporary Parquet file.

Every file must have the same columns with the same types; a file that differs, cannot
be read or is empty is named in one line before any work starts, so a long run never
fails in its third hour on the 900th file.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from polytask.errors import PolytaskError

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".tsv")
#: rows per row group of a CSV's Parquet copy (a unit of shuffling and of sharding)
CSV_GROUP_ROWS = 65536


def is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(PARQUET_SUFFIXES)


def data_files(path: str | Path) -> list[Path]:
    """The files ``path`` names: itself, the Parquet files of a folder (recursively, in
    name order), or a glob's matches; [] where nothing matches."""
    if is_glob(path):
        return sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and is_parquet(f))
    return [p] if p.exists() else []


def is_glob(path: str | Path) -> bool:
    """A pattern (``*``, ``?``, ``[``) of Parquet files that is not itself the name of a
    file or folder; a CSV's name is always one file (globs name Parquet files only, so
    ``?.csv`` that does not exist is a missing file, not a pattern)."""
    text = str(path)
    single = text.lower().endswith(CSV_SUFFIXES)
    return any(ch in text for ch in "*?[") and not Path(path).exists() and not single


def is_many(path: str | Path) -> bool:
    """A folder or a glob: the Parquet files it names are one table."""
    return is_glob(path) or Path(path).is_dir()


def size_on_disk(path: str | Path) -> int:
    return sum(f.stat().st_size for f in data_files(path))


@dataclass(frozen=True)
class Piece:
    """One row group: the unit read, shuffled and shared between processes."""

    file: int
    group: int
    rows: int
    #: position of the piece's first row in the whole table (files in order)
    offset: int


@dataclass
class ParquetSource:
    """The row groups of one or more Parquet files with one schema."""

    files: list[Path]
    schema: pa.Schema
    pieces: list[Piece]
    _open: dict[int, pq.ParquetFile] = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def read(self, piece: Piece, columns: list[str]) -> pa.Table:
        handle = self._open.get(piece.file)
        if handle is None:
            handle = self._open[piece.file] = pq.ParquetFile(self.files[piece.file])
        try:
            return handle.read_row_group(piece.group, columns=columns)
        except (OSError, pa.ArrowException) as err:
            raise PolytaskError(
                f"data file {self.where(piece)} cannot be read ({_first_line(err)}); "
                "check or remove the file"
            ) from None

    def where(self, piece: Piece) -> str:
        """'FILE' row group G, for messages."""
        return f"'{self.files[piece.file]}' row group {piece.group}"

    def fingerprint(self) -> str:
        """What resuming checks: each file's name, size, row count and the schema."""
        h = hashlib.sha256(self.schema.to_string().encode())
        for f in self.files:
            h.update(json.dumps([str(f.resolve()), f.stat().st_size]).encode())
        h.update(json.dumps([[p.file, p.group, p.rows] for p in self.pieces]).encode())
        return h.hexdigest()

    def close(self) -> None:
        for handle in self._open.values():
            handle.close()
        self._open.clear()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _metadata(path: Path) -> Any:
    if path.stat().st_size == 0:
        raise PolytaskError(f"data file '{path}' is empty (0 bytes); remove it or write it again")
    try:
        return pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException) as err:
        raise PolytaskError(
            f"data file '{path}' cannot be read as Parquet ({_first_line(err)}); "
            "check or remove the file"
        ) from None


def check_same_schema(first: Path, schema: pa.Schema, path: Path, other: pa.Schema) -> None:
    """One line naming the file and the first column whose type differs from ``first``'s."""
    for name in schema.names:
        if name not in other.names:
            raise PolytaskError(
                f"data file '{path}' has no column '{name}' (which '{first}' has); every "
                "file of the table needs the same columns"
            )
        want, got = schema.field(name).type, other.field(name).type
        if want != got and not (pa.types.is_null(got) or pa.types.is_null(want)):
            raise PolytaskError(
                f"data file '{path}': column '{name}' is {got} there but {want} in "
                f"'{first}'; write every file with the same column types"
            )
    extra = [n for n in other.names if n not in schema.names]
    if extra:
        raise PolytaskError(
            f"data file '{path}' has a column '{extra[0]}' that '{first}' lacks; every file "
            "of the table needs the same columns"
        )


def open_parquet(path: str | Path) -> ParquetSource:
    """The row groups of the Parquet files ``path`` names, schemas checked to agree."""
    files = data_files(path)
    if not files:
        what = "is a folder with no" if Path(path).is_dir() else "names no"
        raise PolytaskError(
            f"'{path}' {what} Parquet files; give a .csv or .parquet file, a folder of "
            "Parquet files or a glob"
        )
    pieces: list[Piece] = []
    schema: pa.Schema | None = None
    offset = 0
    for i, f in enumerate(files):
        meta = _metadata(f)
        file_schema = meta.schema.to_arrow_schema()
        if schema is None:
            schema = file_schema
        else:
            check_same_schema(files[0], schema, f, file_schema)
        for g in range(meta.num_row_groups):
            rows = meta.row_group(g).num_rows
            if rows:
                pieces.append(Piece(i, g, rows, offset))
                offset += rows
    assert schema is not None
    if not pieces:
        raise PolytaskError(f"'{path}' holds no rows; it needs data rows")
    return ParquetSource(files, schema, pieces)


def csv_to_parquet(path: Path, out: Path) -> None:
    """Stream a CSV into a Parquet file of ``CSV_GROUP_ROWS``-row groups (types from its
    first block); a block whose values don't fit the column's type is named."""
    import pyarrow.csv as pcsv

    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=1 << 24),
            parse_options=pcsv.ParseOptions(delimiter=sep),
        )
    except (OSError, pa.ArrowException) as err:
        raise PolytaskError(
            f"data file '{path}' cannot be read as CSV ({_first_line(err)})"
        ) from None
    names = reader.schema.names
    with pq.ParquetWriter(out, reader.schema) as writer:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as err:
                raise PolytaskError(_csv_error(path, names, err)) from None
            for start in range(0, batch.num_rows, CSV_GROUP_ROWS):
                writer.write_table(pa.Table.from_batches([batch.slice(start, CSV_GROUP_ROWS)]))


def _csv_error(path: Path, names: list[str], err: BaseException) -> str:
    """'In CSV column #3: Row #70001: CSV conversion error ...' -> the column's name."""
    import re

    text = _first_line(err)
    found = re.search(r"column #(\d+)", text)
    column = (
        f" column '{names[int(found.group(1))]}'"
        if found and int(found.group(1)) < len(names)
        else ""
    )
    return (
        f"data file '{path}'{column}: a value does not fit the type of the column's first "
        f"rows ({text}); fix the cell or declare the column's type"
    )
