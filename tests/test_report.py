"""The HTML report: self-contained, written atomically beside a run or a comparison, and
rendered by headless Chromium into a page that has real content where the plots are."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polytask
from polytask.analysis.affinity import TaskAffinity
from polytask.api import build_config, train_run
from polytask.compare import compare, make_spec
from polytask.evaluation.report import compare_page, write_report
from polytask.evaluation.summary import summarise_comparison
from tests.conftest import FAST_TRAIN, assert_user_error, make_synthetic, make_table

WIDTH, HEIGHT = 1280, 2400


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    cfg = build_config(
        None,
        ["y_reg:regression", "y_bin:binary", "y_cls:multiclass"],
        epochs=4,
        hidden=[16],
        batch_size=64,
        balancing="uw",
        drop=["id"],
    )
    cfg.balancing.log_every = 2
    train_run(cfg, make_table(300, seed=1), out=out, verbose=False, callbacks=[TaskAffinity(2)])
    return out


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "cmp"
    cfg = build_config(None, ["y1:regression", "y2:binary"], epochs=3, hidden=[16], batch_size=64)
    cfg.balancing.log_every = 2
    spec = make_spec(cfg, ["ew", "uw"], ["hard"], seeds=2, affinity_every=2)
    compare(spec, out, make_synthetic(300, seed=2), report=True)
    return out


def test_run_report_is_self_contained_and_the_run_still_loads(run: Path) -> None:
    path = write_report(run)
    assert path == run / "report.html"
    page = path.read_text()
    assert "<img" in page and 'src="http' not in page and "<script" not in page
    images = _images(page)
    plots = sorted(p.name for p in (run / "report_plots").iterdir())
    assert plots == [
        "affinity_heatmap.png",
        "conflict_heatmap.png",
        "conflict_over_training.png",
        "learning_curves.png",
        "reliability.png",  # y_bin and y_cls: before and after the temperature
        "task_weights.png",
    ]
    assert len(images) == len(plots)
    assert sorted(images) == sorted((run / "report_plots" / p).read_bytes() for p in plots)
    assert all(img.startswith(b"\x89PNG") for img in images)
    for text in ("Learning curves", "Gradient conflict", "Task affinity", "y_cls", "auroc"):
        assert text in page
    model = polytask.load(run)  # the extra files do not disturb the run
    assert model.task_names == ["y_reg", "y_bin", "y_cls"]
    write_report(run)  # writing again replaces the report and its plots
    assert sorted(p.name for p in (run / "report_plots").iterdir()) == plots
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary left


def test_report_never_replaces_what_it_did_not_write(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine.html"
    out.write_text("my notes")
    with pytest.raises(polytask.PolytaskError, match="pass `overwrite=True`"):
        write_report(run, out)
    assert out.read_text() == "my notes"
    folder = tmp_path / "elsewhere_plots"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(polytask.PolytaskError, match="holds more than report plots"):
        write_report(run, tmp_path / "elsewhere.html")
    assert (folder / "keep.txt").read_text() == "mine"
    written = write_report(run, out, overwrite=True)
    assert written == out and "<html" in out.read_text()
    assert (tmp_path / "mine_plots" / "learning_curves.png").is_file()


def test_train_writes_the_report_and_report_cli(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d.csv"
    make_table(200, seed=2).to_csv(data, index=False)
    out = tmp_path / "run"
    r = run_cli(
        [
            "train",
            "--data",
            data,
            "--task",
            "y_reg:regression",
            "--task",
            "y_bin:binary",
            "--drop",
            "id",
            "--out",
            out,
            *FAST_TRAIN,
        ]
    )
    assert r.rc == 0, r.err
    # train writes the self-contained HTML file only: the run stays a flat folder
    assert (out / "report.html").is_file() and not (out / "report_plots").exists()
    assert len(_images((out / "report.html").read_text())) >= 2
    assert polytask.load(out).task_names == ["y_reg", "y_bin"]
    assert run_cli(["report", out]).rc == 0  # asked for: the plots as files too
    assert (out / "report_plots" / "learning_curves.png").is_file()
    again = run_cli(["report", out, "--output", out / "report.html"])
    assert_user_error(again, "already exists", "--overwrite")
    assert run_cli(["report", out, "--output", out / "report.html", "--overwrite"]).rc == 0
    assert_user_error(run_cli(["report", tmp_path / "nope"]), "not a folder")
    assert_user_error(run_cli(["report", tmp_path]), "not a complete polytask run")


def test_compare_report_has_the_table_and_verdicts(comparison: Path) -> None:
    page = (comparison / "report.html").read_text()
    shown = ["Does sharing help?", "single-task", "ew (hard)", "uw (hard)", "Verdicts"]
    shown += ["Δm% = (1/K)", "Task affinity", "Gradient conflict", "Learning curves"]
    for text in shown:
        assert text in page, text
    plots = {p.name for p in (comparison / "report_plots").iterdir()}
    assert {"delta_m.png", "affinity_heatmap.png", "conflict_heatmap.png"} <= plots
    assert "chosen_learning_curves.png" in plots
    assert len(_images(page)) == len(plots)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def _screenshot(html: Path, png: Path, profile: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={WIDTH},{HEIGHT}",
        html.resolve().as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert png.is_file(), "chromium wrote no screenshot"


def test_compare_page_renders_the_comparison_it_is_given(comparison: Path, tmp_path: Path) -> None:
    """The page lays out the summary; it reads no history to recompute a section."""
    folder = shutil.copytree(comparison, tmp_path / "cmp")
    c = summarise_comparison(folder)
    assert c.affinity is not None and c.conflict is not None
    full = compare_page(folder, c).html()
    assert "Gradient conflict" in full and "Task affinity" in full
    shutil.rmtree(folder / "runs" / "hard-ew")  # the analysis variant's runs and histories
    page = compare_page(folder, replace(c, conflict=None)).html()
    assert "Gradient conflict" not in page and "Task affinity" in page


def test_compare_report_renders_in_headless_chromium(comparison: Path, tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "report.png"
    _screenshot(comparison / "report.html", png, tmp_path / "profile")
    image = Image.open(png).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    px = np.asarray(image, dtype=float)
    assert px.std() > 20, "the page is blank"
    non_white = (px < 235).any(axis=2)
    assert non_white.mean() > 0.05
    # the page's content column (main is 1180 px wide, centred): text and plots down it
    for top in range(0, HEIGHT, 600):
        band = non_white[top : top + 600, 50:1230]
        assert band.mean() > 0.01, f"nothing drawn in rows {top}-{top + 600}"
    # plots: saturated colour (Δm bars, heatmaps, curves), not only black text on white
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    colourful = (np.max(px, axis=2) - np.min(px, axis=2)) > 80
    assert colourful.mean() > 0.01
    assert ((r > 150) & (g < 110) & (b < 110)).sum() > 500  # red: a bar or a heatmap cell
    assert ((b > 120) & (r < 90)).sum() > 500  # blue: a curve or a heatmap cell


def test_run_report_renders_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    from PIL import Image

    page = write_report(run).read_text()
    assert ">Calibration</h2>" in page and ">Prediction intervals</h2>" in page
    png = tmp_path / "run.png"
    _screenshot(run / "report.html", png, tmp_path / "profile")
    px = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    assert px.shape == (HEIGHT, WIDTH, 3) and px.std() > 20
    non_white = (px < 235).any(axis=2)
    for top in range(0, HEIGHT, 600):  # tables, calibration, intervals, curves: no gap
        assert non_white[top : top + 600, 50:1230].mean() > 0.01, f"rows {top}-{top + 600} blank"
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    assert ((r > 150) & (g < 110) & (b < 110)).sum() > 500  # red: validation curves, "after"
    assert ((b > 120) & (r < 90)).sum() > 500  # blue: train curves, "before"


def test_report_of_a_run_with_one_task(tmp_path: Path) -> None:
    df = pd.DataFrame({"x": np.arange(60.0), "y": np.arange(60.0) % 7})
    out = tmp_path / "one"
    polytask.fit(df, tasks=["y:regression"], out=out, epochs=2, hidden=[4])
    page = write_report(out).read_text()
    assert "Learning curves" in page and "Gradient conflict" not in page


def test_run_reports_conflict_section_shows_counts_in_headless_chromium(
    run: Path, tmp_path: Path
) -> None:
    """Chromium's DOM of the page: the conflict table names, per pair, how many
    measurements its figures are of (the history's counts), and the rule."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    write_report(run)
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    cmd += [f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom"]
    done = subprocess.run(
        [*cmd, (run / "report.html").resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = done.stdout
    section = dom[dom.index('id="conflict"') :]
    table = section[: section.index("</table>")]
    assert "<th>measurements</th>" in table and "95% interval" in table
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    expected = {}
    for record in history:
        for pair, n in record.get("cosine_n", {}).items():
            expected[pair.replace("~", " / ")] = expected.get(pair.replace("~", " / "), 0) + n
    assert len(expected) == 3 and min(expected.values()) >= 8
    for pair, n in expected.items():
        assert re.search(rf"{re.escape(pair)}</td>.*?<td[^>]*>{n} over 4 epochs</td>", table, re.S)
    assert "at least 8 measurements" in section[: section.index("<table")]


def test_trust_sections_render_in_headless_chromium(tmp_path: Path) -> None:
    """Calibration (reliability diagram), intervals and permutation importance sections
    of a run's report, in Chromium's DOM and on its screenshot (issue 15, points 3-5)."""
    from polytask.analysis.importance import explain

    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    df = make_table(300, seed=5)
    out = tmp_path / "run"
    polytask.fit(
        df, ["y_reg:regression", "y_bin:binary"], drop=["id"], epochs=3, hidden=[16], out=out
    )
    explain(out, df, repeats=2)
    write_report(out)
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    cmd += [f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom"]
    dom = subprocess.run(
        [*cmd, (out / "report.html").resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for anchor in ('id="calibration"', 'id="intervals"', 'id="importance"'):
        assert anchor in dom, anchor
    assert 'alt="reliability"' in dom and 'alt="importance_y_bin"' in dom
    png = tmp_path / "trust.png"
    _screenshot(out / "report.html", png, tmp_path / "profile2")
    from PIL import Image

    px = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    assert px.std() > 20 and ((np.max(px, axis=2) - np.min(px, axis=2)) > 80).mean() > 0.005
