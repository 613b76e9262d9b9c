"""What a newcomer meets in the first ten minutes (issue 17, points 4-6): a start summary
and epoch lines that name tasks and fit the terminal, hints that run as printed, one
behaviour per situation, messages with counts and rows, and no noise."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from polytask.cli import hints
from polytask.errors import PolytaskError
from polytask.evaluation.plots import heatmap, png_bytes
from polytask.evaluation.report import write_report
from polytask.serving.app import MAX_ERRORS, create_app
from polytask.tasks._numeric import parse_numeric_labels
from polytask.tasks.regression import RegressionTask
from polytask.training.progress import epoch_summary
from tests.conftest import assert_user_error, call_cli, make_synthetic


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A CLI run on 100 synthetic rows, trained with progress output at 60 columns."""
    base = tmp_path_factory.mktemp("newcomer")
    data = base / "d.csv"
    make_synthetic(100, seed=0).to_csv(data, index=False)
    mp = pytest.MonkeyPatch()
    mp.setenv("COLUMNS", "60")
    try:
        argv = ["train", "--data", data, "--task", "y1:regression", "--task", "y2:binary"]
        result = call_cli([*argv, "--epochs", "2", "--hidden", "8", "--out", base / "run"])
    finally:
        mp.undo()
    assert result.rc == 0, result.err
    return base / "run", data, result.err


def test_training_starts_with_a_summary_and_names_tasks_within_the_width(small_run) -> None:
    _, _, err = small_run
    lines = err.splitlines()
    assert "rows: 70 train, 15 validation, 15 test" in lines
    assert "  numeric (4): x0, x1, x2, x3" in lines
    assert "  y1 (regression): 70 of 70 training rows labelled" in lines
    assert "  y2 (binary, 2 classes): 70 of 70 training rows labelled" in lines
    epochs = [i for i, line in enumerate(lines) if line.startswith("epoch ")]
    assert len(epochs) == 2 and "y1 " in lines[epochs[0]]
    assert "y2 " in lines[epochs[0]] + lines[epochs[0] + 1]  # wrapped between tasks, not in one
    assert all(len(line) <= 60 for line in lines if not line.startswith("next:")), err
    assert any(line.startswith("next: polytask predict ") for line in lines)


def test_an_epoch_line_breaks_between_tasks_only() -> None:
    class T:
        def __init__(self, name: str) -> None:
            self.name, self.headline = name, {"mae": False}

    tasks = [T("body_mass_g"), T("flipper_length_mm"), T("bill_depth_mm")]
    loss = {t.name: 0.5 for t in tasks}
    record = {
        "epoch": 3,
        "train": {"loss": loss},
        "validation": {"loss": loss, "metrics": {t.name: {"mae": 1.25} for t in tasks}},
        "best": True,
    }
    wide = epoch_summary(tasks, record, width=200, epochs=10)  # type: ignore[arg-type]
    assert wide.count("\n") == 0 and wide.startswith("epoch   3/10  body_mass_g 0.5000→0.5000")
    narrow = epoch_summary(tasks, record, width=60, epochs=10)  # type: ignore[arg-type]
    lines = narrow.splitlines()
    assert len(lines) == 4 and all(len(line) <= 60 for line in lines)
    assert lines[0] == "epoch   3/10  body_mass_g 0.5000→0.5000 mae 1.2500"
    assert lines[1].lstrip().startswith("flipper_length_mm 0.5000→0.5000 mae 1.2500")
    assert lines[3].strip() == "* best"


def test_hints_print_the_command_as_it_runs_from_here(tmp_path: Path, monkeypatch) -> None:
    script = tmp_path / ".venv" / "bin" / "polytask"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv is not on the PATH
    monkeypatch.setattr("sys.argv", [".venv/bin/polytask", "train"])
    assert hints.command() == ".venv/bin/polytask"
    message = "continue it with polytask train --resume runs/x"
    assert hints.as_run(message) == "continue it with .venv/bin/polytask train --resume runs/x"
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")  # on the PATH: as typed
    assert hints.command() == "polytask"
    monkeypatch.setattr("sys.argv", ["/x/polytask/__main__.py"])
    assert hints.command().endswith(" -m polytask")
    assert hints.as_run("python -m polytask report x") == "python -m polytask report x"
    assert "pip install 'polytask[export]'" in hints.as_run("pip install 'polytask[export]'")


def test_evaluate_says_which_tasks_it_left_out(small_run, tmp_path: Path) -> None:
    run, data, _ = small_run
    path = tmp_path / "e.csv"
    pd.read_csv(data).drop(columns=["y2"]).to_csv(path, index=False)
    result = call_cli(["evaluate", run, "--data", path, "--json"])
    assert result.rc == 0 and set(json.loads(result.out)) == {"y1"}
    assert "warning: not scored, their label columns are not in the data: 'y2'" in result.err


def test_serve_lists_up_to_20_problems(small_run) -> None:
    run, data, _ = small_run
    records = pd.read_csv(data).drop(columns=["y1", "y2"]).to_dict("records")
    for i in (2, 5, 7):
        records[i]["x1"] = "abc"
    with TestClient(create_app(run)) as client:
        detail = client.post("/predict", json={"records": records[:10]}).json()["detail"]
        assert [d["loc"] for d in detail] == [["body", "records", i, "x1"] for i in (2, 5, 7)]
        for r in records[:30]:
            r["x0"] = "n/a"
        detail = client.post("/predict", json={"records": records[:30]}).json()["detail"]
    assert len(detail) == MAX_ERRORS + 1 and detail[-1]["type"] == "more_errors"
    assert all(d["type"] == "numeric_value" for d in detail[:MAX_ERRORS])


def test_report_replaces_only_its_own_file_without_overwrite(small_run, tmp_path: Path) -> None:
    run, _, _ = small_run
    assert "Written by polytask" in (run / "report.html").read_text()
    write_report(run, plots=False)  # train's report: polytask's own, replaced
    (run / "report.html").write_text("my notes")
    with pytest.raises(PolytaskError, match="polytask did not write it; pass `overwrite=True`"):
        write_report(run, plots=False)
    assert (run / "report.html").read_text() == "my notes"
    write_report(run, plots=False, overwrite=True)


def test_messages_name_the_count_and_first_rows_and_only_real_near_misses(
    small_run, tmp_path: Path
) -> None:
    values = pd.Series(["1.5", "abc", "2", "n/a", "abc", "x", "y"], name="mass")
    with pytest.raises(
        PolytaskError, match=r"found 'abc', 'n/a', 'x', \.\.\. \(5 cells, rows 1, 3, 4, \.\.\.\)"
    ):
        parse_numeric_labels("mass", "regression", values)
    run, data, _ = small_run
    argv = ["train", "--data", data, "--task", "y1:regression", "--out", tmp_path / "r"]
    line = assert_user_error(call_cli([*argv, "--drop", "colour"]), "--drop column 'colour'")
    assert "its columns are 'x0', 'x1', 'x2', 'x3', 'y1', 'y2'" in line
    renamed = pd.read_csv(data).drop(columns=["x2"])
    renamed["x_2"] = 0.0
    path = tmp_path / "p.csv"
    renamed.to_csv(path, index=False)
    line = assert_user_error(
        call_cli(["predict", run, "--data", path, "--output", tmp_path / "o.csv"]),
        "feature column 'x2' is missing",
    )
    assert "(close: 'x_2')" in line and "'x1'" not in line  # another feature is no near miss


def test_r2_of_a_constant_split_is_undefined_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = RegressionTask._regression_metrics(np.ones(3), np.array([1.0, 2.0, 3.0]), True)
    assert out["r2"] is None and out["r2_log"] is None and out["mae"] == 1.0


def test_a_heatmaps_long_task_name_is_not_cut() -> None:
    from io import BytesIO

    from PIL import Image

    m = np.eye(3)
    png = png_bytes(heatmap(m, ["species", "sex", "body_mass_g"], "t", limit=1.0))
    px = np.asarray(Image.open(BytesIO(png)).convert("L"))
    assert (px[:, :3] > 250).all(), "something is drawn at the image's left edge"


def test_demo_help_has_descriptions_and_defaults() -> None:
    from polytask.cli.parser import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    text = " ".join(sub["demo"].format_help().split())
    assert "maximum epochs (default auto" in text and "(default 0)" in text
    assert all(a.help for a in sub["demo"]._actions)
    compare = " ".join(sub["compare"].format_help().split())
    assert "skip writing OUT/report.html" in compare and "RUN_DIR/report.html" not in compare
    assert "runs use seeds --seed, --seed + 1" in compare
