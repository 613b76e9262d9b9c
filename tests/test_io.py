"""polytask.io: atomic writes with the modes open()/mkdir() would give, folder swaps, JSON
lines; and the files polytask writes for a user (predictions, runs, reports, exports)
readable by the user's colleagues as the umask allows, not 0600 like a temporary file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polytask import io
from tests.conftest import FAST_TRAIN, TrainedRun, call_cli, make_table

UMASK = 0o022


@pytest.fixture
def umask() -> Iterator[int]:
    """A known umask for the test (0o022: files 0644, folders 0755)."""
    old = os.umask(UMASK)
    try:
        yield UMASK
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_usual_modes(path: Path, mask: int) -> None:
    """``path`` (and, for a folder, everything in it) has the modes open()/mkdir() give."""
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        expected = (0o777 if p.is_dir() else 0o666) & ~mask
        assert mode(p) == expected, (p, oct(mode(p)), oct(expected))


def no_temporaries(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


# -- the module ---------------------------------------------------------------------------------


def test_writes_are_atomic_and_get_the_usual_mode(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "sub" / "a.json"
    io.write_json(target, {"x": np.float32(1.5), "n": np.int64(3)})
    assert json.loads(target.read_text()) == {"x": 1.5, "n": 3}
    assert target.read_text().endswith("\n")
    assert_usual_modes(target, umask)
    io.write_text(target, "new", durable=True)
    assert target.read_text() == "new"
    with pytest.raises(ValueError):
        io.write_json(target, {"x": float("nan")})  # strict JSON: nothing is written
    assert target.read_text() == "new"
    no_temporaries(target.parent)


def test_a_failed_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_text("old")

    def fails(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.write_with(target, fails)
    assert target.read_text() == "old"
    no_temporaries(tmp_path)


def test_write_with_keeps_the_suffix_a_writer_needs(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "arrays.npz"
    io.write_with(target, lambda tmp: np.savez_compressed(tmp, a=np.arange(3)), ".npz")
    np.testing.assert_array_equal(np.load(target)["a"], np.arange(3))
    assert_usual_modes(target, umask)
    no_temporaries(tmp_path)


def test_a_stricter_umask_is_kept(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        io.write_text(tmp_path / "private.txt", "x")
        io.replace_folder(tmp_path / "plots", {"a.png": b"1"})
    finally:
        os.umask(old)
    assert mode(tmp_path / "private.txt") == 0o600
    assert_usual_modes(tmp_path / "plots", 0o077)


def test_replace_folder_swaps_the_whole_folder(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / "plots"
    io.replace_folder(folder, {"a.png": b"1", "b.png": b"2"})
    io.replace_folder(folder, {"c.png": b"3"})
    assert sorted(p.name for p in folder.iterdir()) == ["c.png"]
    assert (folder / "c.png").read_bytes() == b"3"
    assert_usual_modes(folder, umask)
    no_temporaries(tmp_path)


def test_swap_folder_puts_the_old_folder_back_when_the_new_one_cannot_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final, new = tmp_path / "run", tmp_path / "new"
    final.mkdir()
    (final / "keep.txt").write_text("old")
    new.mkdir()
    real = os.replace
    calls: list[Path] = []

    def second_fails(src: object, dst: object) -> None:
        calls.append(Path(str(src)))
        if len(calls) == 2:
            raise OSError("no")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError):
        io.swap_folder(new, final)
    assert (final / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "run"]


def test_json_lines_round_trip_and_skip_a_damaged_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    records = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]
    io.write_jsonl(path, records)
    assert io.read_jsonl(path) == records
    with path.open("a") as f:
        f.write('{"epoch": 3, "lo')  # a write cut short
    assert io.read_jsonl(path) == records
    assert io.read_jsonl(tmp_path / "missing.jsonl") == []


# -- the files polytask writes for a user -------------------------------------------------------


def test_predict_output_has_the_usual_mode(
    trained_run: TrainedRun, tmp_path: Path, umask: int
) -> None:
    for name in ("p.csv", "p.parquet"):
        out = tmp_path / name
        result = call_cli(["predict", trained_run.run, "--data", trained_run.data, "--output", out])
        assert result.rc == 0, result.err
        assert_usual_modes(out, umask)
        assert len(pd.read_csv(out) if name.endswith("csv") else pd.read_parquet(out)) == 300
    no_temporaries(tmp_path)


def test_run_directory_and_report_have_the_usual_modes(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "d.csv"
    make_table(120).to_csv(data, index=False)
    run = tmp_path / "run"
    args = ["train", "--data", data, "--task", "y_reg:regression", "--drop", "id", "--out", run]
    result = call_cli([*args, *FAST_TRAIN])
    assert result.rc == 0, result.err
    assert (run / "report.html").is_file()
    assert_usual_modes(run, umask)
    report = tmp_path / "out" / "page.html"
    result = call_cli(["report", run, "--output", report])
    assert result.rc == 0, result.err
    assert_usual_modes(report.parent, umask)


def test_export_has_the_usual_modes(trained_run: TrainedRun, tmp_path: Path, umask: int) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    out = tmp_path / "model.onnx"
    result = call_cli(["export", trained_run.run, "--output", out])
    assert result.rc == 0, result.err
    written = [p for p in tmp_path.iterdir()]
    assert len(written) == 2  # the graph and its preprocessing
    for p in written:
        assert_usual_modes(p, umask)
