"""The command line end to end: train -> run directory, evaluate --json, predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors import safe_open

import polytask
from polytask.features.splits import split_frame
from tests.conftest import FAST_TRAIN, TrainedRun, assert_user_error

RUN_FILES = {
    "report.html",
    "config.yaml",
    "preprocessing.json",
    "model.safetensors",
    "metrics.json",
    "history.jsonl",
    "run.json",
    "calibration.json",  # temperatures and intervals fitted on validation
}
METRIC_NAMES = {
    "y_reg": {"mae", "rmse", "r2", "coverage", "interval_width", "n"},
    "y_bin": {"auroc", "accuracy", "log_loss", "ece", "brier", "n"},
    "y_cls": {"accuracy", "macro_f1", "ece", "brier", "n"},
}
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".joblib", ".bin", ".npy")


# -- train -----------------------------------------------------------------------------------


def test_train_writes_a_complete_self_contained_run(trained_run: TrainedRun) -> None:
    run = trained_run.run
    assert {p.name for p in run.iterdir()} == RUN_FILES
    # nothing left behind beside it (staging folders)
    assert sorted(p.name for p in run.parent.iterdir()) == ["run", "train.csv"]
    assert "saved run to" in trained_run.train_result.out
    assert "Traceback" not in trained_run.train_result.err

    for f in run.iterdir():
        assert not f.name.endswith(PICKLE_SUFFIXES)
        head = f.read_bytes()[:2]
        assert head[:1] != b"\x80", f"{f.name} looks like a pickle"
        assert head != b"PK", f"{f.name} looks like a zip (torch.save)"
    with safe_open(str(run / "model.safetensors"), framework="pt") as st:
        assert len(list(st.keys())) > 0

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert [t["name"] for t in cfg["tasks"]] == ["y_reg", "y_bin", "y_cls"]
    assert cfg["training"]["epochs"] == 3 and cfg["model"]["hidden"] == [32]
    assert cfg["features"]["drop"] == ["id"]

    prep = json.loads((run / "preprocessing.json").read_text())
    assert [t["kind"] for t in prep["tasks"]] == ["regression", "binary", "multiclass"]
    assert prep["tasks"][1]["state"]["classes"] == ["no", "yes"]
    assert prep["tasks"][2]["state"]["classes"] == ["high", "low", "mid"]
    names = [c["name"] for c in prep["features"]["numeric"] + prep["features"]["categorical"]]
    assert sorted(names) == ["cat", "flag", "x0", "x1", "x2", "x3"]  # id dropped, no labels

    info = json.loads((run / "run.json").read_text())
    assert info["rows"] == {"train": 210, "validation": 45, "test": 45}
    assert info["feature_types"] == {
        "x0": "numeric",
        "x1": "numeric",
        "x2": "numeric",
        "x3": "numeric",
        "cat": "categorical",
        "flag": "boolean",
    }
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == info["epochs_run"] == 3
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for h in history:
        assert set(h["train"]["loss"]) == {"y_reg", "y_bin", "y_cls"}
        assert all(np.isfinite(v) for v in h["train"]["loss"].values())


def test_train_metrics_count_labelled_rows_per_split(trained_run: TrainedRun) -> None:
    metrics = json.loads((trained_run.run / "metrics.json").read_text())
    assert set(metrics) == {"train", "validation", "test"}
    train, val, test = split_frame(trained_run.df, 0.15, 0.15, seed=0)
    for split, frame in (("train", train), ("validation", val), ("test", test)):
        assert set(metrics[split]) == set(METRIC_NAMES)
        for task, names in METRIC_NAMES.items():
            assert set(metrics[split][task]) == names
        assert metrics[split]["y_reg"]["n"] == len(frame)
        assert metrics[split]["y_bin"]["n"] == len(frame)
        assert metrics[split]["y_cls"]["n"] == int(frame["y_cls"].notna().sum())
    # the saved test metrics are what evaluate gives on the test rows
    model = polytask.load(trained_run.run)
    again = model.evaluate(test)
    for task in METRIC_NAMES:
        for name, value in metrics["test"][task].items():
            assert again[task][name] == pytest.approx(value, rel=1e-6)


def test_train_preprocessing_is_fitted_on_the_training_split(trained_run: TrainedRun) -> None:
    prep = json.loads((trained_run.run / "preprocessing.json").read_text())
    train, _, _ = split_frame(trained_run.df, 0.15, 0.15, seed=0)
    x2 = next(c for c in prep["features"]["numeric"] if c["name"] == "x2")
    present = train["x2"].dropna()
    filled = train["x2"].fillna(present.median())
    assert x2["median"] == pytest.approx(present.median())
    assert x2["mean"] == pytest.approx(filled.mean())
    assert x2["std"] == pytest.approx(filled.std(ddof=0))
    assert x2["indicator"] is True
    reg = prep["tasks"][0]["state"]
    assert reg["mean"] == pytest.approx(train["y_reg"].mean())
    assert reg["std"] == pytest.approx(train["y_reg"].std(ddof=0))


def test_train_with_config_file_and_flag_override(run_cli, tmp_path: Path) -> None:
    from tests.conftest import make_table

    df = make_table(150, seed=3)
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "run.yaml").write_text(
        "data: {path: d.csv}\n"
        "tasks:\n"
        "  - {name: y_reg, kind: regression, loss: huber}\n"
        "  - {column: y_bin, kind: binary, pos_weight: balanced}\n"
        "features: {drop: [id]}\n"
        "model: {hidden: [16]}\n"
        "training: {epochs: 50, patience: 3}\n"
    )
    out = tmp_path / "r"
    result = run_cli(["train", "--config", tmp_path / "run.yaml", "--epochs", "2", "--out", out])
    assert result.rc == 0, result.err
    info = json.loads((out / "run.json").read_text())
    assert info["epochs_run"] == 2
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["training"]["epochs"] == 2 and cfg["training"]["patience"] == 3
    assert cfg["tasks"][0]["loss"] == "huber"
    prep = json.loads((out / "preprocessing.json").read_text())
    train, _, _ = split_frame(df, 0.15, 0.15, seed=0)
    neg, pos = (train["y_bin"] == "no").sum(), (train["y_bin"] == "yes").sum()
    assert prep["tasks"][1]["state"]["pos_weight"] == pytest.approx(neg / pos)


def test_train_overwrite_replaces_the_run(run_cli, tmp_path: Path) -> None:
    from tests.conftest import make_table

    make_table(120, seed=4).to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "r"
    base = ["train", "--data", tmp_path / "d.csv", "--task", "y_reg:regression", "--drop", "id"]
    assert run_cli([*base, "--out", out, *FAST_TRAIN]).rc == 0
    (out / "stale.txt").write_text("old")
    result = run_cli([*base, "--out", out, *FAST_TRAIN, "--seed", "1", "--overwrite"])
    assert result.rc == 0, result.err
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "r"]
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["seed"] == 1


def test_multilabel_both_forms_and_count_end_to_end(run_cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 200
    x = rng.normal(size=(n, 3))
    df = pd.DataFrame(x, columns=["x0", "x1", "x2"])
    on = x > 0
    tags = ["|".join(c for c, o in zip("abc", row, strict=True) if o) or None for row in on]
    df["tags"] = tags
    for j, c in enumerate("abc"):
        df[f"w_{c}"] = on[:, j].astype(float)
    df.loc[::6, "w_b"] = np.nan
    df["visits"] = rng.poisson(np.exp(0.5 * x[:, 0]))
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.yaml").write_text(
        "tasks:\n"
        "  - {name: tags, kind: multilabel}\n"
        "  - {name: wide, kind: multilabel, columns: [w_a, w_b, w_c]}\n"
        "  - {name: visits, kind: count}\n"
        "model: {hidden: [16]}\ntraining: {epochs: 2}\n"
    )
    out = tmp_path / "r"
    args = ["train", "--config", tmp_path / "c.yaml", "--data", tmp_path / "d.csv"]
    result = run_cli([*args, "--out", out, "--quiet"])
    assert result.rc == 0, result.err
    ev = run_cli(["evaluate", out, "--data", tmp_path / "d.csv", "--json"])
    assert ev.rc == 0, ev.err
    scores = json.loads(ev.out)
    assert set(scores) == {"tags", "wide", "visits"}
    assert set(scores["tags"]) == {"micro_f1", "macro_f1", "n"}
    assert set(scores["visits"]) == {"mae", "rmse", "r2", "coverage", "interval_width", "n"}
    assert scores["tags"]["n"] == sum(t is not None for t in tags)
    assert scores["wide"]["n"] == n and scores["visits"]["n"] == n
    pr = run_cli(["predict", out, "--data", tmp_path / "d.csv", "--output", tmp_path / "p.csv"])
    assert pr.rc == 0, pr.err
    pred = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    for c in "abc":
        assert f"tags_proba_{c}" in pred.columns
        assert f"wide_proba_w_{c}" in pred.columns
    assert set("|".join(pred["tags"]).replace("|", "")) <= set("abc")
    assert (pred["visits"].astype(float) > 0).all()


# -- evaluate --------------------------------------------------------------------------------


def test_evaluate_json_prints_only_the_contract_shape(run_cli, trained_run: TrainedRun) -> None:
    result = run_cli(["evaluate", trained_run.run, "--data", trained_run.data, "--json"])
    assert result.rc == 0, result.err
    scores = json.loads(result.out)  # the whole of stdout is JSON
    assert result.err == ""
    assert set(scores) == set(METRIC_NAMES)
    for task, names in METRIC_NAMES.items():
        assert set(scores[task]) == names
        assert all(isinstance(v, float) for k, v in scores[task].items() if k != "n")
    df = trained_run.df
    assert scores["y_reg"]["n"] == scores["y_bin"]["n"] == 300
    assert scores["y_cls"]["n"] == int(df["y_cls"].notna().sum())
    expected = polytask.load(trained_run.run).evaluate(df)
    for task in METRIC_NAMES:
        for name, value in expected[task].items():
            assert scores[task][name] == pytest.approx(value, rel=1e-9)


def test_evaluate_leaves_out_absent_tasks_and_nulls_undefined_metrics(
    run_cli, trained_run: TrainedRun, tmp_path: Path
) -> None:
    df = trained_run.df.drop(columns=["y_cls"])
    df["y_bin"] = "yes"  # one class: auroc undefined
    df.loc[:9, "y_reg"] = np.nan
    path = tmp_path / "e.csv"
    df.to_csv(path, index=False)
    result = run_cli(["evaluate", trained_run.run, "--data", path, "--json"])
    assert result.rc == 0, result.err
    scores = json.loads(result.out)
    assert set(scores) == {"y_reg", "y_bin"}
    assert "null" in result.out
    assert scores["y_bin"]["auroc"] is None
    assert isinstance(scores["y_bin"]["accuracy"], float)
    assert scores["y_reg"]["n"] == 290

    df["y_bin"] = np.nan  # no labelled rows at all
    df.to_csv(path, index=False)
    scores = json.loads(run_cli(["evaluate", trained_run.run, "--data", path, "--json"]).out)
    nothing = dict.fromkeys(("auroc", "accuracy", "log_loss", "ece", "brier"))
    assert scores["y_bin"] == {**nothing, "n": 0}

    df.drop(columns=["y_reg", "y_bin"]).to_csv(path, index=False)
    result = run_cli(["evaluate", trained_run.run, "--data", path, "--json"])
    assert result.rc == 0 and json.loads(result.out) == {}


def test_evaluate_table_output(run_cli, trained_run: TrainedRun) -> None:
    result = run_cli(["evaluate", trained_run.run, "--data", trained_run.data])
    assert result.rc == 0
    for word in ("y_reg", "y_bin", "y_cls", "auroc", "macro_f1", "300"):
        assert word in result.out


# -- predict ---------------------------------------------------------------------------------


def messy_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Shuffled rows without labels, with an unseen category and some missing values."""
    rows = df.sample(frac=1.0, random_state=7).drop(columns=["y_reg", "y_bin", "y_cls"])
    rows = rows.reset_index(drop=True)
    rows.loc[0, "cat"] = "never-seen"
    rows.loc[1, ["x0", "x1", "flag"]] = [np.nan, np.nan, None]
    return rows


def test_predict_writes_one_row_per_input_row_in_order(
    run_cli, trained_run: TrainedRun, tmp_path: Path
) -> None:
    rows = messy_rows(trained_run.df)
    data = tmp_path / "new.csv"
    rows.to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    result = run_cli(
        ["predict", trained_run.run, "--data", data, "--output", out, "--keep", "id,cat"]
    )
    assert result.rc == 0, result.err
    assert result.out == ""
    pred = pd.read_csv(out)
    assert list(pred.columns) == [
        "id",
        "cat",
        "y_reg",
        "y_reg_lower",
        "y_reg_upper",
        "y_bin",
        "y_bin_proba",
        "y_cls",
        "y_cls_proba_high",
        "y_cls_proba_low",
        "y_cls_proba_mid",
    ]
    assert len(pred) == len(rows)
    assert pred["id"].tolist() == rows["id"].tolist()
    assert pred.loc[0, "cat"] == "never-seen"
    assert pred.notna().drop(columns="cat").all().all()
    assert set(pred["y_bin"]) <= {"yes", "no"}
    assert ((pred["y_bin"] == "yes") == (pred["y_bin_proba"] >= 0.5)).all()
    assert pred["y_bin_proba"].between(0, 1).all()
    probs = pred[["y_cls_proba_high", "y_cls_proba_low", "y_cls_proba_mid"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert pred["y_cls"].tolist() == [["high", "low", "mid"][i] for i in probs.argmax(axis=1)]

    expected = polytask.load(trained_run.run).predict(rows)
    np.testing.assert_allclose(pred["y_reg"], expected["y_reg"], rtol=1e-9)
    assert pred["y_cls"].tolist() == expected["y_cls"].tolist()


def test_predict_refuses_to_overwrite_unless_asked(
    run_cli, trained_run: TrainedRun, tmp_path: Path
) -> None:
    out = tmp_path / "pred.csv"
    out.write_text("precious\n")
    args = ["predict", trained_run.run, "--data", trained_run.data, "--output", out]
    assert_user_error(run_cli(args), "already exists", "--overwrite")
    assert out.read_text() == "precious\n"
    result = run_cli([*args, "--overwrite"])
    assert result.rc == 0, result.err
    assert len(pd.read_csv(out)) == 300
    assert [p.name for p in tmp_path.iterdir()] == ["pred.csv"]  # no temp files left


def test_predict_parquet_output_and_input(run_cli, trained_run: TrainedRun, tmp_path: Path) -> None:
    rows = messy_rows(trained_run.df)
    rows.to_parquet(tmp_path / "new.parquet", index=False)
    rows.to_csv(tmp_path / "new.csv", index=False)
    a = run_cli(
        [
            "predict",
            trained_run.run,
            "--data",
            tmp_path / "new.parquet",
            "--output",
            tmp_path / "p.parquet",
            "--keep",
            "id",
        ]
    )
    b = run_cli(
        [
            "predict",
            trained_run.run,
            "--data",
            tmp_path / "new.csv",
            "--output",
            tmp_path / "p.csv",
            "--keep",
            "id",
        ]
    )
    assert a.rc == 0 and b.rc == 0, (a.err, b.err)
    pq = pd.read_parquet(tmp_path / "p.parquet")
    csv = pd.read_csv(tmp_path / "p.csv")
    assert list(pq.columns) == list(csv.columns)
    assert pq["id"].tolist() == rows["id"].tolist()
    np.testing.assert_allclose(pq["y_reg"], csv["y_reg"], rtol=1e-9)
    assert pq["y_bin"].tolist() == csv["y_bin"].tolist()


def test_predict_unknown_output_suffix(run_cli, trained_run: TrainedRun, tmp_path: Path) -> None:
    args = ["predict", trained_run.run, "--data", trained_run.data, "--output", tmp_path / "p.xls"]
    assert_user_error(run_cli(args), ".csv or .parquet")


# -- a real process ------------------------------------------------------------------------------


def _subprocess(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "polytask", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_python_m_polytask_evaluate_and_error(trained_run: TrainedRun, tmp_path: Path) -> None:
    ok = _subprocess(["evaluate", trained_run.run, "--data", trained_run.data, "--json"])
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(ok.stdout)) == set(METRIC_NAMES)
    bad = _subprocess(["evaluate", trained_run.run, "--data", tmp_path / "missing.csv"])
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "does not exist" in lines[0]
    assert bad.stdout == ""


def test_predict_keep_of_a_label_column_keeps_the_prediction_name(
    run_cli, trained_run: TrainedRun, tmp_path: Path
) -> None:
    plain, kept = tmp_path / "a.csv", tmp_path / "b.csv"
    base = ["predict", trained_run.run, "--data", trained_run.data, "--output"]
    assert run_cli([*base, plain]).rc == 0
    assert run_cli([*base, kept, "--keep", "id,y_bin"]).rc == 0
    a, b = pd.read_csv(plain), pd.read_csv(kept)
    assert b["y_bin"].tolist() == a["y_bin"].tolist()


# -- flags from the schema -------------------------------------------------------------------

OLD_TRAIN_FLAGS = [
    "--config",
    "--data",
    "--task",
    "--out",
    "--resume",
    "--validation",
    "--test",
    "--features",
    "--drop",
    "--categorical",
    "--numeric",
    "--text",
    "--image",
    "--epochs",
    "--batch-size",
    "--lr",
    "--patience",
    "--seed",
    "--hidden",
    "--balancing",
    "--architecture",
    "--device",
    "--overwrite",
    "--quiet",
    "--affinity-every",
    "--no-report",
    "--tensorboard",
    "--mlflow",
]


def _options(command: str) -> set[str]:
    from polytask.cli.parser import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {o for a in sub.choices[command]._actions for o in a.option_strings}


def test_every_train_and_compare_flag_keeps_its_name() -> None:
    assert set(OLD_TRAIN_FLAGS) <= _options("train")
    compare = set(OLD_TRAIN_FLAGS) - {"--resume", "--balancing", "--architecture"}
    assert compare | {"--methods", "--architectures", "--seeds"} <= _options("compare")


def test_train_help_shows_each_key_and_its_schema_default(capsys) -> None:
    from polytask.cli.parser import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in (
        "(training.epochs; default auto)",
        "(training.batch_size; default auto)",
        "(training.lr; default auto)",
        "(training.patience; default auto)",
        "(model.hidden; default 256,128)",
        "(balancing.method; default ew)",
        "(model.architecture; default hard)",
        "(training.affinity_every; default 0)",
        "upgrad",
    ):
        assert needle in text


def test_a_flag_overrides_just_its_own_key_of_the_config(tmp_path: Path) -> None:
    from polytask.cli import _train_config
    from polytask.cli.parser import build_parser

    (tmp_path / "run.yaml").write_text(
        "tasks: [{name: y, kind: regression}]\n"
        "features: {drop: [a], text: [t]}\n"
        "balancing: {method: cagrad, c: 0.2, log_every: 5}\n"
        "training: {epochs: 50, patience: 3}\n"
        "tracking: {mlflow: {uri: 'file:./m', experiment: e}}\n"
    )
    argv = ["train", "--config", str(tmp_path / "run.yaml"), "--epochs", "2", "--drop", "b,c"]
    argv += ["--balancing", "mean", "--mlflow", "sqlite:///x.db", "--hidden", "8,4", "--out", "r"]
    argv += ["--no-report", "--features", ""]
    cfg = _train_config(build_parser().parse_args(argv))
    assert cfg.training.epochs == 2 and cfg.training.patience == 3
    assert cfg.training.report is False and cfg.features.include is None
    assert cfg.features.drop == ["a", "b", "c"] and cfg.features.text == ["t"]
    assert cfg.balancing.method == "mean" and cfg.balancing.log_every == 5
    assert cfg.balancing.options == {"c": 0.2}  # the method's check says c is unknown to it
    assert cfg.tracking.mlflow is not None and cfg.tracking.mlflow.experiment == "e"
    assert cfg.tracking.mlflow.uri == "sqlite:///x.db" and cfg.model.hidden == [8, 4]


def test_cli_errors_name_the_flag_of_a_key_the_library_names() -> None:
    from polytask.config.keys import with_flags

    assert (
        with_flags("lower training.lr, set training.grad_clip")
        == "lower --lr, set training.grad_clip"
    )
    assert with_flags("check features.include / features.drop") == "check --features / --drop"
    assert with_flags("config: 'training.epochs': bad") == "config: 'training.epochs': bad"
    assert (
        with_flags("training.epochs_x and xtraining.epochs")
        == "training.epochs_x and xtraining.epochs"
    )


def test_library_names_front_door_arguments_as_the_api_spells_them_and_the_cli_as_flags(
    tmp_path: Path,
) -> None:
    """A Python caller is told ``out`` / ``overwrite=True`` (the keywords it passes); the
    CLI user the flags (--out / --overwrite) for the same error."""
    from polytask import run_dir
    from polytask.config.keys import with_flags
    from polytask.errors import PolytaskError

    taken = tmp_path / "run"
    taken.mkdir()
    (taken / "x.txt").write_text("keep me")
    with pytest.raises(PolytaskError) as err:
        run_dir.check_can_create(taken, overwrite=False)
    message = str(err.value)
    assert "`out`" in message and "`overwrite=True`" in message and "--" not in message
    assert "choose another --out or pass --overwrite" in with_flags(message)
    assert with_flags("`seeds` and `tasks`, not `unknown`") == "--seeds and --task, not `unknown`"
