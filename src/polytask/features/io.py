"""Reading tables from CSV or Parquet with errors that say what went wrong."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polytask.errors import PolytaskError

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.xz", ".csv.bz2", ".csv.zip", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise PolytaskError(
        f"'{path}': unsupported file type; use a .csv (optionally compressed) or .parquet file"
    )


def read_table(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise PolytaskError(f"data file '{p}' does not exist; check the path")
    if p.is_dir():
        raise PolytaskError(f"'{p}' is a folder, not a data file; pass a .csv or .parquet file")
    kind = _kind(p)
    if p.stat().st_size == 0:
        raise PolytaskError(f"data file '{p}' is empty; it needs a header row and data rows")
    try:
        if kind == "parquet":
            df = pd.read_parquet(p)
        else:
            sep = "\t" if p.name.lower().endswith(".tsv") else ","
            df = pd.read_csv(p, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError:
        raise PolytaskError(
            f"data file '{p}' is empty; it needs a header row and data rows"
        ) from None
    except PermissionError:
        raise PolytaskError(f"data file '{p}' cannot be read (permission denied)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PolytaskError(
            f"data file '{p}' cannot be read as {kind.upper()} ({first}); check its format"
        ) from None
    return check_frame(df, str(p))


def check_frame(df: pd.DataFrame, where: str = "data") -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise PolytaskError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    if df.shape[0] == 0:
        raise PolytaskError(f"{where} has a header but no rows; it needs data rows")
    dup = df.columns[df.columns.duplicated()].tolist()
    if dup:
        raise PolytaskError(f"{where} has duplicate column names {dup}; rename them")
    df.columns = [str(c) for c in df.columns]
    return df
