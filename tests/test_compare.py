"""polytask compare: single-task baselines vs multi-task variants, resumable, with Δm."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polytask.api
from polytask import PolytaskError
from polytask.api import build_config
from polytask.compare import compare, make_spec
from polytask.evaluation.layout import Variant, result_path, variant_config
from polytask.metrics.delta_m import delta_m
from tests.conftest import assert_user_error, make_synthetic

TASKS = ["y1:regression", "y2:binary"]
HEADLINE = {"y1": {"mae": False}, "y2": {"auroc": True}}


def small_config(**extra):  # type: ignore[no-untyped-def]
    return build_config(None, TASKS, epochs=2, hidden=[16], batch_size=64, **extra)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return make_synthetic(300, seed=4)


@pytest.fixture(scope="module")
def finished(df: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    spec = make_spec(small_config(), ["ew", "uw"], ["hard"], seeds=2, affinity_every=2)
    return out, compare(spec, out, df, report=False)


def _results(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / "results.json").read_text())


def test_files_and_table_rows(finished) -> None:  # type: ignore[no-untyped-def]
    out, _ = finished
    for name in ("compare.json", "results.json", "results.md", "results.csv"):
        assert (out / name).is_file(), name
    res = _results(out)
    assert [r["name"] for r in res["rows"]] == ["single-task", "ew (hard)", "uw (hard)"]
    assert res["seeds"] == [0, 1] and res["failures"] == []
    assert "K = number of headline metrics" in res["formula"]
    for row in res["rows"]:
        assert row["seeds"] == [0, 1]
        assert set(row["test"]) == {"y1", "y2"} and set(row["test"]["y1"]) == {"mae"}
        assert row["params"] > 0 and row["seconds_per_epoch"] > 0
        assert 1 <= row["mean_rank"] <= 3
    # the single-task row adds up both models; a 2-task hard model shares its trunk
    stl, ew = res["rows"][0], res["rows"][1]
    assert stl["params"] > ew["params"]
    assert stl["delta_m"] == 0.0
    md = (out / "results.md").read_text()
    assert "Δm% = (1/K)" in md and "| single-task | 2/2 |" in md
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["variant"] for r in rows] == ["single-task", "ew (hard)", "uw (hard)"]
    assert float(rows[1]["delta_m_pct"]) == pytest.approx(ew["delta_m"])


def test_delta_m_and_spread_recomputed_from_the_saved_runs(finished) -> None:  # type: ignore[no-untyped-def]
    out, c = finished
    spec = json.loads((out / "compare.json").read_text())
    variants = {
        v["name"]: Variant(**{k: v[k] for k in ("kind", "method", "architecture", "task")})
        for v in spec["variants"]
    }

    def test_metrics(name: str, seed: int) -> dict:  # type: ignore[type-arg]
        r = json.loads(result_path(out, variants[name], seed).read_text())
        return r["metrics"]["test"]

    for name in ("ew (hard)", "uw (hard)"):
        mtl = [test_metrics(name, s) for s in (0, 1)]
        stl = [
            {
                "y1": test_metrics("single-task y1", s)["y1"],
                "y2": test_metrics("single-task y2", s)["y2"],
            }
            for s in (0, 1)
        ]
        mean_mtl = {t: {m: np.mean([x[t][m] for x in mtl]) for m in HEADLINE[t]} for t in HEADLINE}
        mean_stl = {t: {m: np.mean([x[t][m] for x in stl]) for m in HEADLINE[t]} for t in HEADLINE}
        # by hand: mae term +(M − S)/S, auroc term −(M − S)/S, averaged, in percent
        mae_term = (mean_mtl["y1"]["mae"] - mean_stl["y1"]["mae"]) / mean_stl["y1"]["mae"]
        auc_term = -(mean_mtl["y2"]["auroc"] - mean_stl["y2"]["auroc"]) / mean_stl["y2"]["auroc"]
        row = c.row(name)
        assert row.delta_m == pytest.approx(100 * (mae_term + auc_term) / 2)
        per_seed = [delta_m(mtl[s], stl[s], HEADLINE).value for s in (0, 1)]
        assert row.delta_m_std == pytest.approx(np.std(per_seed, ddof=1))
        assert row.test["y1"]["mae"]["values"] == pytest.approx([x["y1"]["mae"] for x in mtl])


def test_variant_is_chosen_on_validation_and_judged_on_test(finished) -> None:  # type: ignore[no-untyped-def]
    _, c = finished
    multi = [r for r in c.rows if r.kind == "multi"]
    assert c.chosen == min(multi, key=lambda r: r.delta_m_validation).name
    assert [(v.task, v.metric) for v in c.verdicts] == [("y1", "mae"), ("y2", "auroc")]
    chosen = c.row(c.chosen)
    for v in c.verdicts:
        assert v.mtl_mean == pytest.approx(chosen.test[v.task][v.metric]["mean"])
        assert v.stl_mean == pytest.approx(c.rows[0].test[v.task][v.metric]["mean"])
        assert v.p_value is not None and v.label
    assert c.affinity is not None and c.affinity.variant == "ew (hard)"
    assert c.affinity.to_dict()["variant"] == "ew (hard)"
    assert np.array(c.affinity.to_dict()["matrix"]).shape == (2, 2)
    assert c.affinity.to_dict()["groupings"][0]["groups"] == [["y1", "y2"]]
    assert c.conflict is not None and c.conflict.to_dict()["pairs"][0]["pair"] == "y1~y2"


def test_single_task_models_never_see_the_other_labels() -> None:
    cfg = small_config()
    one = variant_config(cfg, Variant("single", "ew", "hard", "y1"), seed=5)
    assert [t.name for t in one.tasks] == ["y1"]
    assert "y2" in one.features.drop and "y1" not in one.features.drop
    assert one.training.seed == 5 and one.model.architecture == "hard"
    listed = small_config(features=["x0", "x1", "y2"])
    assert variant_config(listed, Variant("single", "ew", "hard", "y1"), 0).features.include == [
        "x0",
        "x1",
    ]


def test_method_options_carry_over_only_to_their_method() -> None:
    cfg = build_config({"balancing": {"method": "cagrad", "c": 0.2}}, TASKS, epochs=1)
    same = variant_config(cfg, Variant("multi", "cagrad", "hard"), 0)
    other = variant_config(cfg, Variant("multi", "ew", "hard"), 0)
    assert same.balancing.options == {"c": 0.2}
    assert other.balancing.method == "ew" and other.balancing.options == {}


def test_resume_skips_finished_runs_and_retries_failed_ones(
    df: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(small_config(), ["ew", "uw"], ["hard"], seeds=2, affinity_every=0)
    out = tmp_path / "cmp"
    real = polytask.api.train_run

    def flaky(cfg, *args, **kwargs):  # type: ignore[no-untyped-def]
        if cfg.balancing.method == "uw" and cfg.training.seed == 1:
            raise RuntimeError("simulated crash")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(polytask.api, "train_run", flaky)
    messages: list[str] = []
    c = compare(spec, out, df, report=False, progress=messages.append)
    assert c.failures == [
        {"variant": "uw (hard)", "seed": 1, "error": "RuntimeError: simulated crash"}
    ]
    uw = c.row("uw (hard)")
    assert uw.seeds == [0] and uw.delta_m is not None  # the others went on
    assert "1 failed" in (out / "results.md").read_text()
    assert "simulated crash" in (out / "results.md").read_text()

    monkeypatch.setattr(polytask.api, "train_run", real)
    weights = out / "runs" / "hard-ew" / "seed-0" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    messages.clear()
    c2 = compare(spec, out, df, report=False, progress=messages.append)
    kept = [m for m in messages if m.endswith("done earlier, kept")]
    assert len(kept) == 7 and len(messages) == 8  # only the failed run is redone
    assert weights.stat().st_mtime_ns == stamp
    assert c2.failures == [] and c2.row("uw (hard)").seeds == [0, 1]


def test_a_changed_config_needs_overwrite(df: pd.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    spec = make_spec(small_config(), ["ew"], ["hard"], seeds=1, affinity_every=0)
    compare(spec, out, df, report=False)
    longer = make_spec(small_config(patience=3), ["ew"], ["hard"], seeds=1, affinity_every=0)
    with pytest.raises(PolytaskError, match="different config; pass `overwrite=True`"):
        compare(longer, out, df, report=False)
    c = compare(longer, out, df, report=False, overwrite=True)
    saved = json.loads((out / "runs" / "hard-ew" / "seed-0.json").read_text())
    assert saved["config"]["training"]["patience"] == 3 and c.row("ew (hard)").seeds == [0]


def test_spec_errors_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(PolytaskError, match="at least two tasks"):
        make_spec(build_config(None, ["y1:regression"]))
    with pytest.raises(PolytaskError, match="nope"):
        make_spec(small_config(), ["ew", "nope"])
    with pytest.raises(PolytaskError, match="unknown architecture"):
        make_spec(small_config(), ["ew"], ["nope"])
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    spec = make_spec(small_config(), ["ew"], seeds=1)
    with pytest.raises(PolytaskError, match="holds no comparison"):
        compare(spec, stray, make_synthetic(50, 0), report=False)
    assert (stray / "notes.txt").read_text() == "mine"


def test_cli_compare_prints_the_table(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d.csv"
    make_synthetic(200, seed=1).to_csv(data, index=False)
    out = tmp_path / "cmp"
    args = ["compare", "--data", data, "--task", "y1:regression", "--task", "y2:binary",
            "--epochs", "2", "--hidden", "8", "--seeds", "1", "--methods", "ew",
            "--out", out, "--quiet", "--no-report"]  # fmt: skip
    r = run_cli(args)
    assert r.rc == 0, r.err
    assert "single-task" in r.out and "ew (hard)" in r.out and "Δm" in r.out
    assert (out / "results.md").is_file() and not (out / "report.html").exists()
    again = run_cli(args)
    assert again.rc == 0 and json.loads((out / "results.json").read_text())["rows"]
    bad = run_cli(["compare", "--data", data, "--task", "y1:regression", "--out", out])
    assert_user_error(bad, "at least two tasks")
    bad = run_cli([*args[:-4], "--methods", "ew,bogus", "--out", tmp_path / "b", "--quiet"])
    assert_user_error(bad, "bogus")


def test_an_interrupted_comparison_says_how_to_go_on(
    df: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(small_config(), ["ew"], ["hard"], seeds=1, affinity_every=0)
    out = tmp_path / "cmp"
    real = polytask.api.train_run
    calls: list[str] = []

    def stop_on_third(cfg, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(cfg.balancing.method)
        if len(calls) == 3:
            raise KeyboardInterrupt("stopped")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(polytask.api, "train_run", stop_on_third)
    with pytest.raises(KeyboardInterrupt, match="run the same command again") as info:
        compare(spec, out, df, report=False)
    assert "ew (hard), seed 0" in str(info.value)
    monkeypatch.setattr(polytask.api, "train_run", real)
    messages: list[str] = []
    compare(spec, out, df, report=False, progress=messages.append)
    assert [m.endswith("kept") for m in messages] == [True, True, False]


def test_architecture_options_go_to_their_architecture() -> None:
    spec = make_spec(small_config(), ["ew"], ["hard", "mmoe"], 1, 0, {"mmoe": {"experts": 2}})
    mmoe = variant_config(spec.config, Variant("multi", "ew", "mmoe"), 0, spec.architecture_options)
    hard = variant_config(spec.config, Variant("multi", "ew", "hard"), 0, spec.architecture_options)
    assert mmoe.model.options == {"experts": 2} and hard.model.options == {}
    with pytest.raises(PolytaskError, match="experts"):
        make_spec(small_config(), ["ew"], ["mmoe"], 1, 0, {"mmoe": {"experts": 0}})
    with pytest.raises(PolytaskError, match="not compared"):
        make_spec(small_config(), ["ew"], ["hard"], 1, 0, {"mmoe": {"experts": 2}})
