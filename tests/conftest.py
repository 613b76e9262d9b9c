"""Shared data generators and helpers for the polytask test suite.

Everything here is small and seeded so the suite stays fast and deterministic. Torch is
limited to one thread: on a small shared machine several threads per process slow small
networks down by an order of magnitude.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from polytask import cli

torch.set_num_threads(1)

#: flags that keep a CLI training run small and quiet
FAST_TRAIN = ["--epochs", "3", "--hidden", "32", "--quiet"]


# -- data generators --------------------------------------------------------------------------


def make_synthetic(n: int, seed: int) -> pd.DataFrame:
    """A known two-task function of four uniform features.

    y1 = sin(x0) + x1 * x2 (regression), y2 = 1[x0 + x3 > 0] (binary 1/0)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 4))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    df["y1"] = np.sin(x[:, 0]) + x[:, 1] * x[:, 2]
    df["y2"] = (x[:, 0] + x[:, 3] > 0).astype(int)
    return df


def make_table(n: int = 300, seed: int = 0, missing_cls: float = 0.4) -> pd.DataFrame:
    """A mixed table: an id, numeric/categorical/boolean features with gaps, and three
    label columns (regression, yes/no binary, 3-class multiclass with missing labels)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    df = pd.DataFrame(
        {
            "id": np.arange(1000, 1000 + n),
            "x0": x[:, 0],
            "x1": x[:, 1],
            "x2": x[:, 2],
            "x3": x[:, 3],
            "cat": rng.choice(["a", "b", "c"], n),
            "flag": rng.choice(["yes", "no"], n),
        }
    )
    df.loc[rng.random(n) < 0.1, "x2"] = np.nan
    df.loc[rng.random(n) < 0.1, "cat"] = None
    df["y_reg"] = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + (df["cat"] == "a") * 0.5
    df["y_bin"] = np.where(x[:, 0] + x[:, 3] > 0, "yes", "no")
    cls = np.array(["low", "mid", "high"], dtype=object)[np.digitize(x[:, 1], [-0.5, 0.5])]
    cls[rng.random(n) < missing_cls] = None
    df["y_cls"] = cls
    return df


# -- running the CLI in-process ------------------------------------------------------------------


@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def call_cli(argv: list[str]) -> CliResult:
    """Run ``polytask.cli.main(argv)``, capturing stdout/stderr (no pytest fixture needed)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:  # argparse errors
            rc = e.code if isinstance(e.code, int) else 1
    return CliResult(rc, out.getvalue(), err.getvalue())


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], CliResult]:
    """``polytask.cli.main`` with capsys: returns (rc, stdout, stderr)."""

    def run(argv: list[str]) -> CliResult:
        capsys.readouterr()
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run


def assert_user_error(result: CliResult, *needles: str) -> str:
    """Exit 2, one line on stderr starting with 'error:' naming the problem, no traceback."""
    assert result.rc == 2, (result.rc, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out
    lines = result.err_lines
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("error:"), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


# -- one trained run shared by the CLI tests -------------------------------------------------------


@dataclass
class TrainedRun:
    run: Path
    data: Path
    df: pd.DataFrame
    train_result: CliResult


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A CLI-trained run on make_table(): y_reg regression, y_bin binary, y_cls multiclass
    (40% of its labels missing)."""
    base = tmp_path_factory.mktemp("trained")
    df = make_table(300, seed=0)
    data = base / "train.csv"
    df.to_csv(data, index=False)
    run = base / "run"
    result = call_cli(
        [
            "train",
            "--data",
            data,
            "--task",
            "y_reg:regression",
            "--task",
            "y_bin:binary",
            "--task",
            "y_cls:multiclass",
            "--drop",
            "id",
            "--out",
            run,
            *FAST_TRAIN,
        ]
    )
    assert result.rc == 0, result.err
    return TrainedRun(run=run, data=data, df=df, train_result=result)
