"""Tracking: what TensorBoard and MLflow hold after a run equals the run's own history."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polytask
from polytask import PolytaskError
from polytask.api import build_config, train_run
from polytask.config import parse_config
from polytask.training import Callback
from polytask.training.tracking import (
    MlflowTracker,
    epoch_scalars,
    final_scalars,
    flatten_config,
    mlflow_key,
)
from tests.conftest import FAST_TRAIN, assert_user_error, call_cli, make_table

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)

#: MLflow's SQLite store uses a deprecated SQLAlchemy loader option
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TASKS = ["y_reg:regression", "y_bin:binary", "y_cls:multiclass"]
EPOCHS = 4


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _mlflow_run(uri: str, experiment: str) -> Any:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run logged to both backends: MGDA, so every epoch has weights and cosines."""
    base = tmp_path_factory.mktemp("tracking")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    model = polytask.fit(
        make_table(200, seed=3),
        tasks=TASKS,
        drop=["id"],
        epochs=EPOCHS,
        patience=None,
        hidden=[16],
        balancing={"method": "mgda", "log_every": 1},
        tracking={
            "tensorboard": str(base / "tb"),
            "mlflow": {"uri": uri, "experiment": "exp", "run_name": "first"},
        },
    )
    return {"model": model, "tb": base / "tb", "uri": uri}


def test_every_epoch_number_of_the_history_is_in_tensorboard(tracked: dict[str, Any]) -> None:
    model, events = tracked["model"], _events(tracked["tb"])
    history = model.history
    assert len(history) == EPOCHS
    tags = set(events.Tags()["scalars"])
    expected = set().union(*(epoch_scalars(r) for r in history))
    # what the brief asks for is among them: losses, metrics, weights, cosines, lr
    for task in model.task_names:
        assert {f"train/loss/{task}", f"validation/loss/{task}", f"weights/{task}"} <= expected
    assert {"lr", "cosine/y_reg~y_bin", "validation/metrics/y_bin/auroc"} <= expected
    assert expected <= tags
    checked = 0
    for tag in expected:
        logged = {e.step: e.value for e in events.Scalars(tag)}
        want = {r["epoch"]: v for r in history if (v := epoch_scalars(r).get(tag)) is not None}
        assert logged.keys() == want.keys(), tag
        for step, value in want.items():  # TensorBoard keeps float32
            assert logged[step] == np.float32(value), (tag, step)
            checked += 1
    assert checked >= EPOCHS * 20
    # the weights are MGDA's (they sum to 1 on each logged step), not placeholders
    for r in history:
        assert sum(r["weights"].values()) == pytest.approx(1.0, abs=1e-4)


def test_tensorboard_holds_final_metrics_and_the_config(tracked: dict[str, Any]) -> None:
    model, events = tracked["model"], _events(tracked["tb"])
    test = model.metrics["test"]
    assert events.Scalars("final/test/y_reg/mae")[0].value == np.float32(test["y_reg"]["mae"])
    assert events.Scalars("final/test/y_cls/accuracy")[0].value == np.float32(
        test["y_cls"]["accuracy"]
    )
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "method: mgda" in text and "epochs: 4" in text


def test_mlflow_holds_the_history_params_and_final_metrics(tracked: dict[str, Any]) -> None:
    model = tracked["model"]
    client, run = _mlflow_run(tracked["uri"], "exp")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "first"
    params = run.data.params
    assert params["training.epochs"] == str(EPOCHS)
    assert params["balancing.method"] == "mgda"
    assert params["tasks.1.kind"] == "binary" and params["model.hidden"] == "[16]"
    assert params == {mlflow_key(k): v for k, v in flatten_config(model.config.to_dict()).items()}
    keys = set().union(*(epoch_scalars(r) for r in model.history))
    assert "cosine/y_reg-y_bin" in {mlflow_key(k) for k in keys}
    for key in keys:
        logged = {
            m.step: m.value for m in client.get_metric_history(run.info.run_id, mlflow_key(key))
        }
        want = {
            r["epoch"]: v for r in model.history if (v := epoch_scalars(r).get(key)) is not None
        }
        assert logged == want, key  # doubles, exactly
    finals = final_scalars(model.metrics)
    assert finals["final/test/y_bin/auroc"] == model.metrics["test"]["y_bin"]["auroc"]
    for key, value in finals.items():
        assert run.data.metrics[key] == value


def test_cli_flags_log_to_tensorboard_and_an_mlflow_file_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "x")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # unset now, restored as unset afterwards
    data = tmp_path / "d.csv"
    make_table(120).to_csv(data, index=False)
    uri = (tmp_path / "mlruns").as_uri()  # file:///...
    result = call_cli(
        [
            "train",
            "--data",
            data,
            "--task",
            "y_reg:regression",
            "--task",
            "y_bin:binary",
            "--out",
            tmp_path / "run",
            "--tensorboard",
            tmp_path / "tb",
            "--mlflow",
            uri,
            *FAST_TRAIN,
        ]
    )
    assert result.rc == 0, result.err
    history = polytask.load(tmp_path / "run").history
    events = _events(tmp_path / "tb")
    assert [e.value for e in events.Scalars("train/loss/y_bin")] == [
        np.float32(r["train"]["loss"]["y_bin"]) for r in history
    ]
    client, run = _mlflow_run(uri, "polytask")
    assert run.info.status == "FINISHED"
    logged = client.get_metric_history(run.info.run_id, "validation/loss/y_reg")
    assert [m.value for m in logged] == [r["validation"]["loss"]["y_reg"] for r in history]


class _Boom(Callback):
    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        if record["epoch"] == 2:
            raise RuntimeError("boom")


def test_a_run_that_fails_is_marked_failed_with_what_it_logged(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = build_config(
        tasks=["y_reg:regression"],
        epochs=5,
        hidden=[8],
        progress=False,
        drop=["id"],
        tracking={"mlflow": {"uri": uri, "experiment": "e"}, "tensorboard": str(tmp_path / "t")},
    )
    with pytest.raises(RuntimeError, match="boom"):
        train_run(cfg, make_table(80), verbose=False, callbacks=[_Boom()])
    client, run = _mlflow_run(uri, "e")
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss/y_reg")] == [1]
    assert [e.step for e in _events(tmp_path / "t").Scalars("train/loss/y_reg")] == [1]


@pytest.mark.parametrize(
    ("flag", "module"),
    [("--mlflow", "mlflow.tracking"), ("--tensorboard", "torch.utils.tensorboard")],
)
def test_a_missing_package_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now fails
    data = tmp_path / "d.csv"
    make_table(60).to_csv(data, index=False)
    out = tmp_path / "run"
    value = f"sqlite:///{tmp_path / 'm.db'}" if flag == "--mlflow" else str(tmp_path / "tb")
    result = call_cli(
        ["train", "--data", data, "--task", "y_reg:regression", "--out", out, flag, value]
    )
    assert_user_error(result, "pip install 'polytask[tracking]'")
    assert not out.exists() and not (tmp_path / "tb").exists()


def test_unusable_destinations_are_user_errors(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    df = make_table(60)
    for tracking, needle in [
        ({"tensorboard": str(afile)}, "is a file"),
        ({"mlflow": "nosuchscheme://x"}, "tracking.mlflow.uri"),
        ({"mlflow": f"sqlite:///{afile}/x.db"}, "tracking.mlflow.uri"),
    ]:
        with pytest.raises(PolytaskError, match=needle) as err:
            polytask.fit(df, tasks=["y_reg:regression"], epochs=1, hidden=[4], tracking=tracking)
        assert "\n" not in str(err.value)
    assert afile.read_text() == "mine"


def test_tracking_config_schema() -> None:
    cfg = parse_config({"tracking": {"mlflow": "sqlite:///m.db", "tensorboard": "tb"}})
    assert cfg.tracking.mlflow is not None and cfg.tracking.mlflow.uri == "sqlite:///m.db"
    assert cfg.tracking.mlflow.experiment == "polytask"
    assert parse_config(cfg.to_dict()) == cfg
    assert parse_config({}).tracking.mlflow is None
    with pytest.raises(PolytaskError, match="did you mean 'experiment'"):
        parse_config({"tracking": {"mlflow": {"experimnt": "x"}}})
    with pytest.raises(PolytaskError, match="tracking"):
        parse_config({"tracking": {"wandb": "x"}})


def test_only_the_main_process_logs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'm.db'}")
    tracker.on_train_begin(trainer=None)  # type: ignore[arg-type]
    tracker.on_epoch_end(None, {"epoch": 1, "lr": 0.1})  # type: ignore[arg-type]
    tracker.close()
    assert tracker.run_id is None and not (tmp_path / "m.db").exists()


def test_scalar_and_key_helpers() -> None:
    record = {
        "epoch": 3,
        "best": True,
        "lr": 0.5,
        "train": {"loss": {"n": 1.0, "a": float("nan")}},
        "validation": {"metrics": {"a": {"r2": None, "mae": 2.0, "n": 7}}},
    }
    # a task named "n" keeps its loss; the row count "n" of metrics is dropped
    assert epoch_scalars(record) == {
        "lr": 0.5,
        "train/loss/n": 1.0,
        "validation/metrics/a/mae": 2.0,
    }
    assert mlflow_key("weights/größe ü") == "weights/größe ü"
    assert mlflow_key("cosine/a~b") == "cosine/a-b"
    assert mlflow_key("x/../y:z/") == "x/_/y_z/_"


def test_the_sklearn_estimator_passes_tracking_on(tmp_path: Path) -> None:
    from polytask.sklearn import MultiTaskEstimator

    df = make_table(80)
    est = MultiTaskEstimator(
        epochs=2, hidden=(8,), tracking={"tensorboard": str(tmp_path / "tb")}
    ).fit(df[["x0", "x1", "cat"]], df[["y_reg", "y_bin"]])
    logged = [e.value for e in _events(tmp_path / "tb").Scalars("train/loss/y_reg")]
    assert logged == [np.float32(r["train"]["loss"]["y_reg"]) for r in est.history_]
