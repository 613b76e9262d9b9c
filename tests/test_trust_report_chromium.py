"""Issue 15's report sections in headless Chromium, as tests/test_report.py checks the run
report: the tune page of a 3-task Pareto study (optimisation history, Pareto front,
parameter importances), a run's page after ``polytask explain`` (calibration, intervals,
one importance chart per task, drawn into the report train wrote) and a ``balancing:
auto`` run's race. Each section's heading is in the page, its figures decode as PNGs
with drawn, coloured content, and Chromium's screenshot has no blank band and the plots'
colours."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polytask
from polytask import run_dir
from polytask.evaluation.report import write_report
from tests.conftest import call_cli, make_table
from tests.test_report import HEIGHT, WIDTH, _screenshot

pytest.importorskip("optuna")
Image = pytest.importorskip("PIL.Image")

TASKS = ["y_reg:regression", "y_bin:binary", "y_cls:multiclass"]
SMALL = dict(drop=["id"], hidden=[16], batch_size=64, patience=None, seed=0)


def _red(px: np.ndarray) -> np.ndarray:  # #d62728: front, best so far, importance > 0
    return (px[..., 0] > 150) & (px[..., 1] < 110) & (px[..., 2] < 110)


def _blue(px: np.ndarray) -> np.ndarray:  # #1f77b4, #4a78c2: trials, importance bars
    return (px[..., 2] > 120) & (px[..., 0] < 90)


def _green(px: np.ndarray) -> np.ndarray:  # #2e7d32: the race's kept entrant
    return (px[..., 1] > 100) & (px[..., 0] < 80) & (px[..., 2] < 80)


def _sections(page: str) -> dict[str, str]:
    """Each h2 section's HTML by its anchor (up to the next h2)."""
    parts = re.split(r'(?=<h2 id=")', page)
    return {re.match(r'<h2 id="([^"]+)"', p).group(1): p for p in parts[1:]}  # type: ignore[union-attr]


def _figures(section: str) -> dict[str, np.ndarray]:
    """The section's embedded figures by alt text, decoded (each must be a PNG)."""
    out = {}
    for alt, b64 in re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', section):
        data = base64.b64decode(b64)
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), alt
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.width >= 300 and image.height >= 200, alt
        out[alt] = np.asarray(image.convert("RGB"), dtype=float)
    return out


def _drawn(px: np.ndarray, name: str) -> None:
    """Real content: axes, text and marks cover part of the figure, not all of it."""
    ink = (px < 200).any(axis=2).mean()
    assert 0.02 < ink < 0.6, (name, ink)


def _page_shot(html: Path, tmp: Path) -> np.ndarray:
    """Chromium's screenshot; every 300-px band of the page's content column down to the
    end of <main> (pure white on the page's grey) has something drawn."""
    png = tmp / "shot.png"
    _screenshot(html, png, tmp / "profile")
    px = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    assert px.shape == (HEIGHT, WIDTH, 3) and px.std() > 20
    main = np.flatnonzero((px[:, 60] > 252).all(axis=1))  # x=60: main's left padding
    bottom = int(main.max()) + 1
    assert bottom > 900, bottom
    non_white = (px[:bottom, 50:1230] < 235).any(axis=2)
    for top in range(0, bottom - 150, 300):
        assert non_white[top : top + 300].mean() > 0.01, f"rows {top}-{top + 300} blank"
    return px


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_table(200, seed=3)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    out = tmp_path_factory.mktemp("tune") / "study"
    cfg = polytask.build_config(None, TASKS, epochs=1, **SMALL).to_dict()
    fixed = {"model.architecture": None, "model.hidden": None, "training.batch_size": None}
    cfg["tune"] = {"objective": "pareto", "space": fixed}
    assert polytask.tune(cfg, out=out, trials=3, data=frame).trials == 3
    return out


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    """polytask train (it writes report.html), then polytask explain (it draws into it)."""
    base = tmp_path_factory.mktemp("explain")
    data, out = base / "data.csv", base / "run"
    frame.to_csv(data, index=False)
    tasks = [a for t in TASKS for a in ("--task", t)]
    flags = ["--drop", "id", "--epochs", "2", "--hidden", "16", "--batch-size", "64"]
    trained = call_cli(["train", "--data", data, *tasks, *flags, "--out", out, "--quiet"])
    assert trained.rc == 0, trained.err
    assert 'id="importance"' not in (out / "report.html").read_text()
    done = call_cli(["explain", out, "--data", data, "--repeats", "2"])
    assert done.rc == 0, done.err
    assert f"updated {out / 'report.html'}" in done.err
    return out


@pytest.fixture(scope="module")
def raced(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    out = tmp_path_factory.mktemp("auto") / "run"
    bal = {"method": "auto", "auto_budget": 6, "auto_methods": ["uw"], "auto_weights": 1}
    polytask.fit(frame, TASKS, epochs=2, balancing=bal, out=out, **SMALL)
    write_report(out, plots=False)
    return out


def test_tune_page_of_a_three_task_pareto_study(study: Path, tmp_path: Path) -> None:
    page = (study / "report.html").read_text()
    sections = _sections(page)
    assert list(sections) == ["best", "history", "pareto", "importances"]
    assert ">Optimisation history</h2>" in page and ">Pareto front</h2>" in page
    assert ">Parameter importances</h2>" in page and "trials on the front" in page
    history = _figures(sections["history"])["history"]
    pareto = _figures(sections["pareto"])["pareto"]
    imps = _figures(sections["importances"])["importances"]
    for name, px in (("history", history), ("pareto", pareto), ("importances", imps)):
        _drawn(px, name)
        assert px.shape[1] > 3 * px.shape[0], name  # three panels side by side
    # history: every objective's trials (blue) and its best so far (red)
    assert _blue(history).sum() > 150 and _red(history).sum() > 150
    # the front in red, each of the 3 pairs of objectives; the dominated in grey
    assert _red(pareto).sum() > 100
    for third in np.array_split(pareto, 3, axis=1):
        assert _red(third).sum() > 30
    assert _blue(imps).sum() > 1000  # the importance bars
    px = _page_shot(study / "report.html", tmp_path)
    assert _red(px).sum() > 300 and _blue(px).sum() > 1500


def test_run_page_after_explain_has_calibration_intervals_and_importance(
    explained: Path, tmp_path: Path
) -> None:
    page = (explained / "report.html").read_text()
    sections = _sections(page)
    order = [a for a in sections if a in ("calibration", "intervals", "importance")]
    assert order == ["calibration", "intervals", "importance"]
    assert ">Calibration</h2>" in page and ">Prediction intervals</h2>" in page
    assert ">What drove each task: permutation importance</h2>" in page
    reliability = _figures(sections["calibration"])["reliability"]
    _drawn(reliability, "reliability")
    # before in blue; after in red, drawn only for a task whose temperature moved from 1
    fitted = json.loads((explained / run_dir.CALIBRATION).read_text())["tasks"]
    moved = [t for t, v in fitted.items() if v.get("temperature") not in (None, 1.0)]
    assert _blue(reliability).sum() > 200
    assert (_red(reliability).sum() > 200) == bool(moved)
    charts = _figures(sections["importance"])
    assert list(charts) == ["importance_y_reg", "importance_y_bin", "importance_y_cls"]
    saved = json.loads((explained / run_dir.IMPORTANCE).read_text())
    for task, px in charts.items():
        _drawn(px, task)
        groups = saved["tasks"][task.removeprefix("importance_")]["groups"]
        if max(g["mean"] for g in groups.values()) > 0:  # a positive drop: a red bar
            assert _red(px).sum() > 200, task
    fitted = json.loads((explained / run_dir.CALIBRATION).read_text())["tasks"]
    assert {t for t, v in fitted.items() if v["kind"] == "temperature"} == {"y_bin", "y_cls"}
    row = re.search(r"<tr><td>y_reg</td>(.*?)</tr>", sections["intervals"])
    assert row is not None
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    ev = fitted["y_reg"]["evidence"]
    assert cells[0] == "90%" and cells[1] == f"{fitted['y_reg']['radius']:.4f}"
    assert cells[3] == f"{ev['coverage']:.3f}" and cells[5] == str(ev["n"])
    px = _page_shot(explained / "report.html", tmp_path)
    assert _red(px).sum() > 1000 and _blue(px).sum() > 200  # importance, reliability


def test_auto_run_page_shows_its_race(raced: Path, tmp_path: Path) -> None:
    page = (raced / "report.html").read_text()
    race = json.loads((raced / run_dir.RACE).read_text())
    section = _sections(page)["race"]
    assert ">Balancing: the auto race</h2>" in section
    entrants = {r["entrant"] for r in race["rounds"][0]["results"]}
    assert entrants == {"ew", "uw", "weights#1"}
    for name in entrants:
        assert f"<td>{name}" in section, name
    assert f"the winner, {race['winner']['entrant']}" in section
    chart = _figures(section)["race"]
    _drawn(chart, "race")
    assert _green(chart).sum() > 500  # the kept entrant's bar
    px = _page_shot(raced / "report.html", tmp_path)
    assert _green(px).sum() > 500
