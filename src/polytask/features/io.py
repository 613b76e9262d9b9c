"""Reading tables from CSV, Parquet or .npz with errors that say what went wrong."""

from __future__ import annotations

import lzma
import zipfile
import zlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from polytask.errors import PolytaskError
from polytask.features.arrays import BASE_DIR
from polytask.features.stream.files import is_many, open_parquet

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.xz", ".csv.bz2", ".csv.zip", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
NPZ_SUFFIXES = (".npz",)


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(NPZ_SUFFIXES):
        return "npz"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise PolytaskError(
        f"'{path}': unsupported file type; use a .csv (optionally compressed), .parquet "
        "or .npz file"
    )


def read_table(path: str | Path) -> pd.DataFrame:
    if is_many(path):  # a folder or glob of Parquet files: one table
        return read_parquet_files(path)
    p = Path(path)
    if not p.exists():
        raise PolytaskError(f"data file '{p}' does not exist; check the path")
    kind = _kind(p)
    if p.stat().st_size == 0:
        raise PolytaskError(f"data file '{p}' is empty; it needs a header row and data rows")
    try:
        if kind == "parquet":
            df = pd.read_parquet(p)
        elif kind == "npz":
            df = read_npz(p)
        else:
            sep = "\t" if p.name.lower().endswith(".tsv") else ","
            df = pd.read_csv(p, sep=sep, low_memory=False)
            if df.shape[1] == 1:  # one column: an empty line is a missing value, not nothing
                df = pd.read_csv(p, sep=sep, low_memory=False, skip_blank_lines=False)
            _check_csv_header(p, sep)
    except pd.errors.EmptyDataError:
        raise PolytaskError(
            f"data file '{p}' is empty; it needs a header row and data rows"
        ) from None
    except PermissionError:
        raise PolytaskError(f"data file '{p}' cannot be read (permission denied)") from None
    except PolytaskError:
        raise
    except (
        pd.errors.ParserError,
        UnicodeDecodeError,
        OSError,
        ValueError,
        EOFError,  # a truncated compressed file
        zipfile.BadZipFile,
        lzma.LZMAError,
        zlib.error,
    ) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PolytaskError(
            f"data file '{p}' cannot be read as {kind.upper()} ({first}); check its format"
        ) from None
    df = check_frame(df, str(p))
    df.attrs[BASE_DIR] = str(p.resolve().parent)  # where relative file paths start
    return df


def read_parquet_files(path: str | Path) -> pd.DataFrame:
    """The Parquet files of a folder or glob, in name order, as one table (their schemas
    checked to agree first, so a file that differs is named)."""
    source = open_parquet(path)  # names an empty, unreadable or different file
    try:
        table = pa.concat_tables([pq.read_table(f) for f in source.files])
    except (OSError, pa.ArrowException) as err:
        raise PolytaskError(
            f"'{path}' cannot be read as Parquet ({err}); check its files"
        ) from None
    df = check_frame(table.to_pandas(), str(path))
    df.attrs[BASE_DIR] = str(source.files[0].resolve().parent)
    return df


def _check_csv_header(path: Path, sep: str) -> None:
    """pandas renames a repeated header name (a, a.1); say so instead of training on it."""
    raw = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = [n for n in raw.iloc[0].tolist() if n != ""] if len(raw) else []
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PolytaskError(f"data file '{path}' has duplicate column names {dup}; rename them")


def read_npz(path: Path) -> pd.DataFrame:
    """An .npz of arrays that share their first dimension: 1-D arrays become columns,
    arrays of images, masks or maps become columns holding one array per row."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if not arrays:
        raise PolytaskError(f"'{path}' holds no arrays")
    sizes = {k: a.shape[0] if a.ndim else 0 for k, a in arrays.items()}
    n = max(sizes.values())
    bad = [k for k, s in sizes.items() if s != n]
    if bad:
        raise PolytaskError(
            f"'{path}': array '{bad[0]}' has {sizes[bad[0]]} rows but others have {n}; "
            "every array needs one row per example"
        )
    columns = {k: (a if a.ndim == 1 else list(a)) for k, a in arrays.items()}
    return pd.DataFrame(columns)


def check_frame(df: pd.DataFrame, where: str = "data") -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise PolytaskError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    if df.shape[0] == 0:
        raise PolytaskError(f"{where} has a header but no rows; it needs data rows")
    names = pd.Index([str(c) for c in df.columns])  # 1 and "1" are the same name
    dup = names[names.duplicated()].unique().tolist()
    if dup:
        raise PolytaskError(f"{where} has duplicate column names {dup}; rename them")
    df.columns = list(names)
    return df
