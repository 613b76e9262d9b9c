"""A task kind defined here alone, outside polytask, works end to end once registered.

``QuantileTask`` (pinball loss for one quantile of a real target) is written against the
``Task`` protocol only and registered with :func:`polytask.tasks.register`; nothing else in
polytask knows its name. It then trains from the CLI (``COLUMN:quantile:q=...``),
evaluates, predicts, serves over HTTP, takes part in a comparison with Δm, fits as a
scikit-learn estimator and gets its gradient-boosting baseline, all by asking the task.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import Field

import polytask
from polytask import PolytaskError
from polytask.api import build_config
from polytask.compare import compare, make_spec
from polytask.evaluation.gbm_baseline import gbm_scores
from polytask.metrics.scoring import higher_is_better
from polytask.serving.app import create_app
from polytask.serving.payload import json_records
from polytask.sklearn import MultiTaskEstimator
from polytask.tasks import KINDS, Task, TaskOptions, register, unregister
from tests.conftest import call_cli, make_synthetic


class QuantileOptions(TaskOptions):
    q: float = Field(0.5, gt=0, lt=1)


def _pinball(diff: np.ndarray, q: float) -> float:
    """Mean pinball loss of ``truth - prediction``."""
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


class QuantileTask(Task):
    """The q-quantile of a real target: pinball loss on a standardised scale."""

    kind = "quantile"
    Options = QuantileOptions
    directions: ClassVar[dict[str, bool]] = {"pinball": False, "mae": False}
    headline_metrics = ("pinball",)
    score_metric = "pinball"
    options: QuantileOptions

    def __init__(self, name: str, columns: list[str], options: TaskOptions | None = None):
        super().__init__(name, columns, options)
        self.mean, self.std = 0.0, 1.0

    @property
    def output_size(self) -> int:
        return 1

    def _values(self, labels: pd.Series) -> np.ndarray:
        return pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float64)

    def fit(self, labels: pd.Series) -> None:
        y = self._values(labels)
        y = y[~np.isnan(y)]
        self.mean, self.std = float(y.mean()), float(y.std()) or 1.0
        self.fitted = True

    def encode(self, labels: pd.Series) -> tuple[torch.Tensor, torch.Tensor]:
        y = self._values(labels)
        mask = ~np.isnan(y)
        z = np.where(mask, (np.nan_to_num(y) - self.mean) / self.std, 0.0)
        return torch.from_numpy(z.astype(np.float32)), torch.from_numpy(mask)

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = target - output.squeeze(-1)
        q = self.options.q
        return torch.maximum(q * diff, (q - 1) * diff)

    def _units(self, z: np.ndarray) -> np.ndarray:
        return z.reshape(-1).astype(np.float64) * self.std + self.mean

    def metrics(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        if not mask.any():
            return {"pinball": None, "mae": None}
        diff = self._units(target[mask]) - self._units(output.reshape(-1)[mask])
        return {"pinball": _pinball(diff, self.options.q), "mae": float(np.abs(diff).mean())}

    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: self._units(output)}

    def baseline_estimator(self, categorical: list[bool], seed: int) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            loss="quantile", quantile=self.options.q, categorical_features=categorical
        )

    def baseline_scores(self, estimator: Any, x: np.ndarray, target: np.ndarray) -> dict:
        diff = self._units(target) - self._units(estimator.predict(x))
        return {"pinball": _pinball(diff, self.options.q)}

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = float(state["mean"]), float(state["std"])
        self.fitted = True


@pytest.fixture(scope="module", autouse=True)
def quantile_kind() -> Iterator[None]:
    """Registered for this module only: the registry-driven tests elsewhere see the
    built-in kinds, whatever order the suite runs in."""
    register(QuantileTask)
    yield
    unregister("quantile")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    df = make_synthetic(300, seed=5)
    path = tmp_path_factory.mktemp("quantile") / "d.csv"
    df.to_csv(path, index=False)
    return df, path


@pytest.fixture(scope="module")
def run(data: tuple[pd.DataFrame, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, path = data
    out = tmp_path_factory.mktemp("quantile-run") / "run"
    args = ["train", "--data", str(path), "--task", "y1:quantile:q=0.8", "--task", "y2:binary"]
    result = call_cli([*args, "--epochs", "3", "--batch-size", "64", "--out", str(out), "--quiet"])
    assert result.rc == 0, result.err
    return out


def test_registry_knows_the_kind_and_its_directions() -> None:
    assert KINDS["quantile"] is QuantileTask
    assert QuantileTask.headline == {"pinball": False}
    assert higher_is_better("pinball") is False
    with pytest.raises(PolytaskError, match="already registered"):
        register(type("Other", (QuantileTask,), {}))


def test_a_kind_that_contradicts_a_metric_direction_is_refused() -> None:
    flipped = type("Flipped", (QuantileTask,), {"kind": "flipped", "directions": {"pinball": True}})
    with pytest.raises(PolytaskError, match="metric 'pinball' is higher-is-better"):
        register(flipped)
    assert "flipped" not in KINDS


def test_train_evaluate_predict_from_the_cli(run: Path, data: tuple[pd.DataFrame, Path]) -> None:
    df, path = data
    ev = call_cli(["evaluate", str(run), "--data", str(path), "--json"])
    assert ev.rc == 0, ev.err
    scores = json.loads(ev.out)
    assert set(scores["y1"]) == {"pinball", "mae", "n"} and scores["y1"]["n"] == len(df)
    assert scores["y1"]["pinball"] > 0
    out = path.parent / "p.csv"
    pr = call_cli(["predict", str(run), "--data", str(path), "--output", str(out)])
    assert pr.rc == 0, pr.err
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["y1", "y2", "y2_proba"]
    model = polytask.load(run)
    np.testing.assert_allclose(pred["y1"], model.predict(df)["y1"], rtol=1e-6)
    # the 0.8-quantile: about four in five labels lie at or below it (loosely, 3 epochs)
    assert 0.5 < float(np.mean(df["y1"] <= pred["y1"])) <= 1.0


def test_serving_answers_as_predict(run: Path, data: tuple[pd.DataFrame, Path]) -> None:
    df, _ = data
    model = polytask.load(run)
    features = df.drop(columns=["y1", "y2"]).iloc[:20]
    with TestClient(create_app(model)) as client:
        records = features.to_dict(orient="records")
        response = client.post("/predict", json={"records": records})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == json_records(model.predict(features))
        meta = client.get("/metadata").json()
    assert [t["kind"] for t in meta["tasks"]] == ["quantile", "binary"]
    assert meta["tasks"][0]["outputs"] == ["y1"]


def test_compare_takes_its_headline_and_direction(
    data: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    df, _ = data
    cfg = build_config(None, ["y1:quantile:q=0.8", "y2:binary"], epochs=2, hidden=[16])
    spec = make_spec(cfg, ["ew"], ["hard"], seeds=1, affinity_every=0)
    result = compare(spec, tmp_path / "cmp", df, report=False)
    assert result.headline == {"y1": {"pinball": False}, "y2": {"auroc": True}}
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    multi = next(r for r in saved["rows"] if r["name"] == "ew (hard)")
    assert set(multi["test"]["y1"]) == {"pinball"}
    assert multi["delta_m"] is not None and np.isfinite(multi["delta_m"])


def test_sklearn_estimator_and_gbm_baseline(data: tuple[pd.DataFrame, Path]) -> None:
    df, _ = data
    X, Y = df[["x0", "x1", "x2", "x3"]], df[["y1", "y2"]]
    est = MultiTaskEstimator(tasks={"y1": {"kind": "quantile", "q": 0.8}, "y2": "binary"})
    est.set_params(epochs=2, hidden=[8]).fit(X, Y)
    assert est.task_kinds_ == {"y1": "quantile", "y2": "binary"}
    assert set(est.classes_) == {"y2"} and set(est.predict_proba(X)) == {"y2"}
    scores = est.task_scores(X, Y)
    pinball = est.model_.evaluate(df)["y1"]["pinball"]
    assert scores["y1"] == pytest.approx(-pinball)  # lower-is-better, so negated
    assert est.score(X, Y) == pytest.approx((scores["y1"] + scores["y2"]) / 2)
    train, test = df.iloc[:200], df.iloc[200:]
    gbm = gbm_scores(est.model_.tasks, ["x0", "x1", "x2", "x3"], train, test, seed=0)
    assert set(gbm) == {"y1", "y2"} and gbm["y1"]["pinball"] > 0


def test_onnx_export_refuses_a_kind_its_decoder_does_not_know(run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    from polytask.serving.onnx_export import export_onnx

    with pytest.raises(PolytaskError, match=r"cannot export task 'y1' \(quantile\)"):
        export_onnx(run, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
