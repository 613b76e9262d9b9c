"""User errors on the command line: exit code 2, one line on stderr starting with 'error:'
that names the problem, no traceback, and nothing half-written left behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polytask
from polytask.errors import PolytaskError
from polytask.tasks import KINDS
from tests.conftest import FAST_TRAIN, TrainedRun, assert_user_error, make_table


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "d.csv"
    df = make_table(120, seed=1)
    df["outcome"] = np.where(df["x0"] > 0, "died", "alive")
    df["const"] = "a"
    df["empty"] = np.nan
    df.to_csv(path, index=False)
    return path


def train_args(data: Path, *tasks: str, out: Path | None = None) -> list:
    out = out or data.parent / "r"
    args: list = ["train", "--data", data, "--drop", "id", "--out", out, *FAST_TRAIN]
    for t in tasks:
        args += ["--task", t]
    return args


def nothing_written(folder: Path, name: str = "r") -> None:
    assert not (folder / name).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{name}.")], list(
        folder.iterdir()
    )


# -- config and task declarations ------------------------------------------------------------


def test_unknown_config_key_suggests_the_closest(run_cli, table: Path) -> None:
    cfg = table.parent / "c.yaml"
    cfg.write_text("training: {epocs: 3}\ntasks: [{name: y_reg, kind: regression}]\n")
    result = run_cli(["train", "--config", cfg, "--data", table, "--out", table.parent / "r"])
    assert_user_error(result, "unknown key 'training.epocs'", "did you mean 'epochs'?")
    nothing_written(table.parent)


def test_unknown_task_kind_suggests_the_closest(run_cli, table: Path) -> None:
    result = run_cli(train_args(table, "y_reg:regresion"))
    assert_user_error(result, "unknown task kind 'regresion'", "did you mean 'regression'?")
    nothing_written(table.parent)


def test_unknown_task_option(run_cli, table: Path) -> None:
    result = run_cli(train_args(table, "y_bin:binary:postive=yes"))
    assert_user_error(result, "task 'y_bin'", "unknown key 'postive'", "'positive'")


def test_bad_task_spec(run_cli, table: Path) -> None:
    assert_user_error(run_cli(train_args(table, "y_reg")), "task spec 'y_reg'", "COLUMN:KIND")


def test_no_tasks(run_cli, table: Path) -> None:
    assert_user_error(run_cli(train_args(table)), "no tasks given", "--task")


def test_duplicate_task_names(run_cli, table: Path) -> None:
    result = run_cli(train_args(table, "y_reg:regression", "y_reg:count"))
    assert_user_error(result, "task name 'y_reg' is used twice")


def test_unknown_balancing_method(run_cli, table: Path) -> None:
    result = run_cli([*train_args(table, "y_reg:regression"), "--balancing", "eww"])
    assert_user_error(result, "unknown balancing method 'eww'", "did you mean 'ew'?")


def test_balancing_flag_with_options_the_method_does_not_know(run_cli, table: Path) -> None:
    cfg = table.parent / "c.yaml"
    cfg.write_text(
        "tasks: [{name: y_reg, kind: regression}]\n"
        "balancing: {method: weights, weights: {y_reg: 2.0}}\n"
    )
    result = run_cli(["train", "--config", cfg, *train_args(table)[1:], "--balancing", "ew"])
    assert_user_error(result, "balancing method 'ew'", "unknown key 'weights'")


# -- labels ----------------------------------------------------------------------------------


def test_missing_label_column_lists_close_matches(run_cli, table: Path) -> None:
    result = run_cli(train_args(table, "y_rg:regression"))
    assert_user_error(result, "label column 'y_rg' is not in the data", "'y_reg'")
    nothing_written(table.parent)


def test_unparseable_regression_labels(run_cli, table: Path) -> None:
    result = run_cli(train_args(table, "y_cls:regression"))
    line = assert_user_error(result, "task 'y_cls'", "must be numbers", "multiclass")
    assert "'low'" in line or "'mid'" in line or "'high'" in line
    nothing_written(table.parent)


def test_ambiguous_binary_positive_class(run_cli, table: Path) -> None:
    result = run_cli(train_args(table, "outcome:binary"))
    assert_user_error(
        result, "task 'outcome'", "cannot tell which label", "'alive'", "'died'", "positive="
    )
    ok = run_cli(train_args(table, "outcome:binary:positive=died"))
    assert ok.rc == 0, ok.err


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_task_with_fewer_than_two_classes(run_cli, table: Path, kind: str) -> None:
    result = run_cli(train_args(table, f"const:{kind}"))
    assert_user_error(result, "task 'const'", "only one class", "'a'")


@pytest.mark.parametrize("kind", sorted(k for k, c in KINDS.items() if not c.dense))
def test_task_with_no_labelled_rows(run_cli, table: Path, kind: str) -> None:
    # an entire-space task multiplies a binary task's probability: it names one
    spec = f"empty:{kind}:after=y_bin" if kind == "entire_space" else f"empty:{kind}"
    result = run_cli(train_args(table, "y_reg:regression", "y_bin:binary", spec))
    assert_user_error(result, "task 'empty'", "no labelled rows")
    nothing_written(table.parent)


def test_label_cannot_also_be_a_feature(run_cli, table: Path) -> None:
    result = run_cli([*train_args(table, "y_reg:regression"), "--features", "x0,y_reg"])
    assert_user_error(result, "'y_reg'", "cannot also be a feature")


def test_label_also_in_drop_is_a_contradiction(run_cli, table: Path, tmp_path: Path) -> None:
    result = run_cli([*train_args(table, "y_reg:regression"), "--drop", "id,y_reg"])
    assert_user_error(result, "'y_reg'", "drop", "contradict")
    nothing_written(table.parent)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{path: {table}}}\ntasks: [{{name: y_reg, kind: regression}}]\n"
        "features: {drop: [id, y_reg]}\n"
    )
    result = run_cli(["train", "--config", config, "--out", tmp_path / "r2", *FAST_TRAIN])
    assert_user_error(result, "'y_reg'", "contradict")
    import polytask

    with pytest.raises(polytask.PolytaskError, match="contradict"):
        polytask.fit(make_table(80), tasks=["y_reg:regression"], drop=["y_reg"], epochs=1)


def test_unknown_feature_column_in_drop(run_cli, table: Path) -> None:
    result = run_cli([*train_args(table, "y_reg:regression"), "--drop", "xx0"])
    # named by the flag that named it: a dropped column is not a feature (issue 17)
    assert_user_error(result, "--drop column 'xx0'", "'x0'")


# -- data files ------------------------------------------------------------------------------


def test_empty_file(run_cli, tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    result = run_cli(train_args(tmp_path / "e.csv", "y:regression"))
    assert_user_error(result, "e.csv", "is empty")
    nothing_written(tmp_path)


def test_header_without_rows(run_cli, tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("x,y\n")
    assert_user_error(run_cli(train_args(tmp_path / "h.csv", "y:regression")), "no rows")


@pytest.mark.parametrize(
    ("name", "needle"),
    [("g.parquet", "cannot be read as PARQUET"), ("g.csv", "cannot be read as CSV")],
)
def test_unreadable_file(run_cli, tmp_path: Path, name: str, needle: str) -> None:
    rng = np.random.default_rng(0)
    garbage = bytes([0x87, 0xFF, 0x00]) + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    (tmp_path / name).write_bytes(garbage)
    result = run_cli(train_args(tmp_path / name, "y:regression"))
    assert_user_error(result, name, needle)
    nothing_written(tmp_path)


def test_missing_and_unsupported_data_files(run_cli, tmp_path: Path) -> None:
    assert_user_error(
        run_cli(train_args(tmp_path / "nope.csv", "y:regression")), "nope.csv", "does not exist"
    )
    (tmp_path / "d.xlsx").write_bytes(b"PK\x03\x04")
    assert_user_error(
        run_cli(train_args(tmp_path / "d.xlsx", "y:regression")), "unsupported file type"
    )
    assert_user_error(run_cli(train_args(tmp_path, "y:regression")), "is a folder")


# -- run directories and outputs -------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_existing_run_directory_is_left_untouched(
    run_cli, trained_run: TrainedRun, tmp_path: Path
) -> None:
    run = tmp_path / "r"
    shutil.copytree(trained_run.run, run)
    before = snapshot(run)
    result = run_cli(train_args(trained_run.data, "y_reg:regression", out=run))
    assert_user_error(result, f"run directory '{run}' already exists", "--overwrite")
    assert snapshot(run) == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_out_under_a_regular_file(run_cli, table: Path) -> None:
    blocker = table.parent / "blocker"
    blocker.write_text("x")
    result = run_cli(train_args(table, "y_reg:regression", out=blocker / "run"))
    assert_user_error(result, "cannot write to", "blocker")
    assert blocker.read_text() == "x"


def test_out_that_is_an_existing_file(run_cli, table: Path) -> None:
    blocker = table.parent / "blocker"
    blocker.write_text("x")
    result = run_cli([*train_args(table, "y_reg:regression", out=blocker), "--overwrite"])
    assert_user_error(result, "not a directory")
    assert blocker.read_text() == "x"


def _denied(*args: object, **kwargs: object) -> None:
    raise PermissionError(13, "Permission denied")


def test_out_not_writable_fails_before_training(
    run_cli, table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polytask.api

    calls = []
    monkeypatch.setattr(polytask.api, "read_table", lambda *a: calls.append(a))
    monkeypatch.setattr(tempfile, "mkdtemp", _denied)
    result = run_cli(train_args(table, "y_reg:regression"))
    assert_user_error(result, "cannot write to", "Permission denied", "--out")
    assert calls == []  # failed before reading the data
    nothing_written(table.parent)


def test_out_parent_cannot_be_created(
    run_cli, table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Path, "mkdir", _denied)
    result = run_cli(train_args(table, "y_reg:regression", out=table.parent / "new" / "r"))
    assert_user_error(result, "cannot write to", "Permission denied")


def test_failure_while_publishing_leaves_no_partial_run(
    run_cli, table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polytask.run_dir

    real_replace = os.replace

    def replace(src: object, dst: object) -> None:
        if Path(str(dst)).name == "r":
            raise PermissionError(13, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(polytask.run_dir.os, "replace", replace)
    result = run_cli(train_args(table, "y_reg:regression"))
    assert_user_error(result, "cannot write to", "Permission denied")
    nothing_written(table.parent)


def test_predict_output_cannot_be_written(
    run_cli, trained_run: TrainedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["predict", trained_run.run, "--data", trained_run.data, "--output"]
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert_user_error(run_cli([*args, blocker / "p.csv"]), "cannot write", "--output")

    monkeypatch.setattr(tempfile, "mkstemp", _denied)
    result = run_cli([*args, tmp_path / "p.csv"])
    assert_user_error(result, "cannot write", "Permission denied", "--output")
    monkeypatch.undo()

    monkeypatch.setattr(Path, "mkdir", _denied)
    result = run_cli([*args, tmp_path / "sub" / "p.parquet"])
    assert_user_error(result, "cannot write", "Permission denied")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


# -- predict and evaluate inputs -----------------------------------------------------------------


def test_predict_missing_feature_column(run_cli, trained_run: TrainedRun, tmp_path: Path) -> None:
    data = tmp_path / "new.csv"
    trained_run.df.drop(columns=["x1"]).to_csv(data, index=False)
    out = tmp_path / "p.csv"
    result = run_cli(["predict", trained_run.run, "--data", data, "--output", out])
    assert_user_error(result, "feature column 'x1'", "missing")
    assert not out.exists()
    result = run_cli(["evaluate", trained_run.run, "--data", data, "--json"])
    assert_user_error(result, "feature column 'x1'")
    assert result.out == ""


def test_predict_value_of_the_wrong_type(run_cli, trained_run: TrainedRun, tmp_path: Path) -> None:
    df = trained_run.df.astype({"x0": object, "flag": object})
    df.loc[5, "x0"] = "abc"
    data = tmp_path / "new.csv"
    df.to_csv(data, index=False)
    result = run_cli(["predict", trained_run.run, "--data", data, "--output", tmp_path / "p.csv"])
    assert_user_error(result, "feature column 'x0'", "'abc'")
    df = trained_run.df.copy()
    df.loc[5, "flag"] = "maybe"
    df.to_csv(data, index=False)
    result = run_cli(["predict", trained_run.run, "--data", data, "--output", tmp_path / "p.csv"])
    assert_user_error(result, "'flag'", "'maybe'")


def test_predict_keep_column_missing(run_cli, trained_run: TrainedRun, tmp_path: Path) -> None:
    result = run_cli(
        [
            "predict",
            trained_run.run,
            "--data",
            trained_run.data,
            "--output",
            tmp_path / "p.csv",
            "--keep",
            "idd",
        ]
    )
    assert_user_error(result, "--keep column 'idd'", "id")


def test_evaluate_unseen_binary_label(run_cli, trained_run: TrainedRun, tmp_path: Path) -> None:
    df = trained_run.df.copy()
    df.loc[3, "y_bin"] = "maybe"
    df.to_csv(tmp_path / "e.csv", index=False)
    result = run_cli(["evaluate", trained_run.run, "--data", tmp_path / "e.csv", "--json"])
    # as for multiclass (issue 17): unlabelled, scored without it, and said so
    assert result.rc == 0, result.err
    assert "task 'y_bin'" in result.err and "'maybe' (1 cell, row 3)" in result.err
    assert json.loads(result.out)["y_bin"]["n"] == len(df) - 1


def test_not_a_run_directory(run_cli, trained_run: TrainedRun, tmp_path: Path) -> None:
    args = ["--data", trained_run.data, "--output", tmp_path / "p.csv"]
    assert_user_error(run_cli(["predict", tmp_path / "nope", *args]), "does not exist")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.yaml").write_text("{}\n")
    assert_user_error(
        run_cli(["predict", partial, *args]), "not a complete polytask run", "model.safetensors"
    )


def test_damaged_weights(run_cli, trained_run: TrainedRun, tmp_path: Path) -> None:
    run = tmp_path / "r"
    shutil.copytree(trained_run.run, run)
    (run / "model.safetensors").write_bytes(b"not safetensors")
    result = run_cli(["evaluate", run, "--data", trained_run.data])
    assert_user_error(result, "model.safetensors", "damaged")


def test_multiclass_unseen_label_at_evaluate_is_a_one_line_warning(
    run_cli, trained_run: TrainedRun, tmp_path: Path
) -> None:
    df = trained_run.df.copy()
    df.loc[df["y_cls"].notna().idxmax(), "y_cls"] = "extreme"
    df.to_csv(tmp_path / "e.csv", index=False)
    result = run_cli(["evaluate", trained_run.run, "--data", tmp_path / "e.csv", "--json"])
    assert result.rc == 0
    assert [line.split(":")[0] for line in result.err_lines] == ["warning"]
    assert "'extreme'" in result.err
    n = int(trained_run.df["y_cls"].notna().sum()) - 1
    assert json.loads(result.out)["y_cls"]["n"] == n


def test_library_errors_name_keys_and_the_cli_names_flags(run_cli, tmp_path: Path) -> None:
    """The library names the config key (right for an API user); the CLI its flag."""
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    with pytest.raises(PolytaskError, match=r"check features\.include / features\.drop"):
        polytask.fit(df, tasks=["y:regression"], epochs=1)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    result = run_cli(["train", "--data", path, "--task", "y:regression", "--out", tmp_path / "r"])
    assert_user_error(result, "check --features / --drop")
