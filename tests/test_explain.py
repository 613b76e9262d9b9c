"""Permutation importance (polytask explain): a feature planted to drive one task ranks
first for that task and near zero for the others; the result is saved into the run and
drawn in its report; the CLI's mistakes are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polytask
from polytask.analysis.importance import explain, permutation_importance, run_split
from polytask.evaluation.report import write_report
from polytask.features.splits import split_frame
from tests.conftest import assert_user_error


def planted(n: int, seed: int) -> pd.DataFrame:
    """``drive`` alone sets task a; x0..x3 set b and c and nothing else does."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    drive = rng.normal(size=n)
    return pd.DataFrame(
        {
            "drive": drive,
            **{f"x{i}": x[:, i] for i in range(4)},
            "a": 2.0 * drive + 0.1 * rng.normal(size=n),
            "b": (x[:, 0] + x[:, 1] > 0).astype(int),
            "c": np.sin(x[:, 2]) + x[:, 3],
        }
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("explain")
    df = planted(1200, seed=0)
    data = base / "data.csv"
    df.to_csv(data, index=False)
    out = base / "run"
    tasks = ["a:regression", "b:binary", "c:regression"]
    polytask.fit(data, tasks, epochs=25, hidden=[32], out=out, seed=1, patience=100)
    return out, data


def test_the_planted_feature_drives_its_task_only(run: tuple[Path, Path]) -> None:
    out, _ = run
    model = polytask.load(out)
    result = permutation_importance(model, planted(500, seed=7), repeats=3, seed=0)
    a, b, c = (result["tasks"][t]["groups"] for t in ("a", "b", "c"))
    assert next(iter(a)) == "drive"  # ranked first for its task
    assert a["drive"]["mean"] > 1.0  # mae rises by more than a unit of a (sd about 2)
    assert all(abs(a[g]["mean"]) < 0.05 * a["drive"]["mean"] for g in a if g != "drive")
    for groups in (b, c):
        top = max(v["mean"] for v in groups.values())
        assert abs(groups["drive"]["mean"]) < 0.05 * top, groups["drive"]
        assert next(iter(groups)) != "drive"
    assert len(a["drive"]["drops"]) == 3 and a["drive"]["std"] is not None
    assert result["tasks"]["b"]["metric"] == "auroc" and result["tasks"]["a"]["metric"] == "mae"


def test_explain_saves_into_the_run_and_the_report_draws_it(run: tuple[Path, Path]) -> None:
    out, data = run
    result = explain(out, data, repeats=2, split="test", overwrite=True)
    saved = json.loads((out / "importance.json").read_text())
    assert saved["tasks"].keys() == result["tasks"].keys() == {"a", "b", "c"}
    _, _, test = split_frame(pd.read_csv(data), 0.15, 0.15, seed=1)
    assert test is not None and saved["rows"] == len(test) and saved["split"] == "test"
    assert len(run_split(polytask.load(out), pd.read_csv(data), "test")) == len(test)
    with pytest.raises(polytask.PolytaskError, match="already exists"):
        explain(out, data, repeats=1)
    page = write_report(out).read_text()
    assert 'id="importance"' in page
    plots = {p.name for p in (out / "report_plots").iterdir()}
    assert {"importance_a.png", "importance_b.png", "importance_c.png"} <= plots
    assert 'id="intervals"' in page and 'id="calibration"' in page


def test_cli_explain_and_its_mistakes(run_cli, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, data = run
    ok = run_cli(["explain", out, "--data", data, "--repeats", "1", "--json", "--overwrite"])
    assert ok.rc == 0, ok.err
    assert json.loads(ok.out)["repeats"] == 1
    assert_user_error(run_cli(["explain", tmp_path / "nope", "--data", data]), "does not exist")
    missing = run_cli(["explain", out, "--data", tmp_path / "none.csv", "--overwrite"])
    assert_user_error(missing, "none.csv", "does not exist")
    unlabelled = tmp_path / "u.csv"
    pd.read_csv(data).drop(columns=["a", "b", "c"]).to_csv(unlabelled, index=False)
    assert_user_error(
        run_cli(["explain", out, "--data", unlabelled, "--overwrite"]), "no task's label column"
    )
    nofeature = tmp_path / "f.csv"
    pd.read_csv(data).drop(columns=["x2"]).to_csv(nofeature, index=False)
    assert_user_error(run_cli(["explain", out, "--data", nofeature, "--overwrite"]), "x2")
    again = run_cli(["explain", out, "--data", data, "--repeats", "1"])
    assert_user_error(again, "already exists", "--overwrite")
    assert_user_error(
        run_cli(["explain", out, "--data", data, "--repeats", "0", "--overwrite"]), "--repeats"
    )
