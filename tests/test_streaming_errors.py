"""Bad input in a streamed table: a file whose column has another type, an empty file
among many, a missing split key, a row group whose cells don't parse. Each ends in one
line naming the file and the column (exit 2), and no partial output is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import assert_user_error, call_cli
from tests.test_streaming import make_rec, write_parts


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--data", data, "--task", "click:binary", "--streaming", "true",
        "--epochs", "1", "--hidden", "8", "--quiet", "--no-report", "--out", out, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    df = make_rec(600, seed=5)
    return df, write_parts(df, tmp_path_factory.mktemp("bad") / "parts", parts=3, group=100)


def _copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for f in folder.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


def test_a_file_with_another_column_type_is_named(
    parts: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    df, folder = parts
    data = _copy(folder, tmp_path / "d")
    bad = df.iloc[:50].assign(x0=df["x0"].iloc[:50].astype(str))
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), data / "part-09.parquet")
    line = assert_user_error(
        call_cli(_train_args(data, tmp_path / "run")), "part-09.parquet", "'x0'", "double"
    )
    assert "string" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_an_empty_file_among_many_is_named(
    parts: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    _, folder = parts
    data = _copy(folder, tmp_path / "d")
    (data / "part-05.parquet").write_bytes(b"")
    assert_user_error(call_cli(_train_args(data, tmp_path / "run")), "part-05.parquet", "empty")
    assert not (tmp_path / "run").exists()


def test_a_missing_split_key_names_file_and_column(
    parts: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    df, folder = parts
    data = _copy(folder, tmp_path / "d")
    holed = df.iloc[:100].assign(x0=df["x0"].iloc[:100].where(df.index[:100] != 37))
    pq.write_table(pa.Table.from_pandas(holed, preserve_index=False), data / "part-01.parquet")
    line = assert_user_error(
        call_cli(_train_args(data, tmp_path / "run", "--split-key", "x0")),
        "part-01.parquet",
        "'x0'",
        "row 37",
    )
    assert "row group 0" in line


def test_predict_stops_at_a_bad_row_group_and_leaves_no_output(
    parts: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    df, _ = parts
    text = df.assign(x0=df["x0"].map(lambda v: f"{v:.6f}"))
    logs = write_parts(text, tmp_path / "logs", parts=2, group=100)
    run = tmp_path / "run"
    trained = call_cli([*_train_args(logs, run), "--task", "dwell:regression"])  # README's
    assert trained.rc == 0, trained.err
    out = tmp_path / "preds.parquet"
    ok = call_cli(["predict", run, "--data", f"{logs}/part-*.parquet", "--output", out])
    assert ok.rc == 0, ok.err
    assert len(pd.read_parquet(out)) == len(df)
    scores = call_cli(["evaluate", run, "--data", logs, "--json"])
    assert scores.rc == 0 and json.loads(scores.out)["click"]["n"] == len(df)
    data = _copy(logs, tmp_path / "d")
    bad = text.iloc[:150].copy()
    bad.loc[120, "x0"] = "n/a?"
    table = pa.Table.from_pandas(bad, preserve_index=False)
    pq.write_table(table, data / "part-07.parquet", row_group_size=100)
    again = tmp_path / "again.parquet"
    args = ["predict", run, "--data", data, "--output", again]
    line = assert_user_error(call_cli(args), "part-07.parquet", "row group 1", "'x0'", "n/a?")
    assert "numeric" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "logs", "preds.parquet", "run"]
