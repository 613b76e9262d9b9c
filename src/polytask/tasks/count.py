"""Count: non-negative integer targets with a Poisson likelihood on a log-rate output."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import mean_absolute_error, r2_score

from polytask.tasks._baseline import hist_gbm_regressor
from polytask.tasks._numeric import parse_numeric_labels
from polytask.tasks.base import Task
from polytask.tasks.conformal import (
    Conformal,
    IntervalOptions,
    interval_description,
    interval_fit,
    interval_spec,
    interval_state,
    use_coverage,
)
from polytask.tasks.regression import RegressionTask


class CountTask(Task):
    kind = "count"
    Options = IntervalOptions
    options: IntervalOptions
    directions: ClassVar[dict[str, bool]] = {
        "mae": False,
        "rmse": False,
        "r2": True,
        "coverage": True,
        "interval_width": False,
    }
    corrections: ClassVar[tuple[str, ...]] = ("intervals",)
    headline_metrics = ("mae",)
    score_metric = "r2"

    def __init__(self, name: str, columns: list[str], options=None):
        super().__init__(name, columns, options)
        self.mean = 1.0
        self.conformal = Conformal(self.options.intervals)

    @property
    def output_size(self) -> int:
        return 1

    def _parse(self, labels: pd.Series) -> np.ndarray:
        y = parse_numeric_labels(self.name, self.kind, labels)
        ok = y[~np.isnan(y)]
        if (ok < 0).any() or not np.allclose(ok, np.round(ok)):
            bad = ok[(ok < 0) | ~np.isclose(ok, np.round(ok))][:3]
            raise self._error(
                f"count labels in column '{labels.name}' must be non-negative integers, found "
                f"{', '.join(repr(float(v)) for v in bad)}; use kind regression for real values"
            )
        return y

    def fit(self, labels: pd.Series) -> None:
        y = self._parse(labels)
        y = y[~np.isnan(y)]
        if y.size == 0:
            raise self._error(
                f"column '{labels.name}' has no labelled rows in the training split; "
                "fill some labels or drop the task"
            )
        self.mean = float(max(y.mean(), 1e-3))
        self.fitted = True

    def encode(self, labels: pd.Series) -> tuple[torch.Tensor, torch.Tensor]:
        y = self._parse(labels)
        mask = ~np.isnan(y)
        return torch.from_numpy(np.where(mask, y, 0.0).astype(np.float32)), torch.from_numpy(mask)

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # output is the log rate; Poisson NLL without the constant log(y!) term
        return F.poisson_nll_loss(output.squeeze(-1), target, log_input=True, reduction="none")

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.poisson_nll_loss(output.squeeze(-1), target, log_input=True)

    def group_key(self) -> tuple:
        return ("count",)

    @classmethod
    def columns_loss(
        cls, tasks: list[Task], output: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        return F.poisson_nll_loss(output, target, log_input=True, reduction="none")

    def metrics(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        pred = np.exp(output.reshape(-1)[mask].astype(np.float64))
        true = target[mask].astype(np.float64)
        out = RegressionTask._regression_metrics(true, pred, log_scale=False)
        return {**out, **self.conformal.metrics(pred, true, self._floor())}

    def labels_in_units(self, target: np.ndarray) -> np.ndarray:
        return target.astype(np.float64)

    def _floor(self) -> float:
        return 0.0  # counts are never negative

    def fit_corrections(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        return interval_fit(self, self.conformal, output, target, mask)

    def correction_evidence(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        if not self.conformal.fitted:
            return {}
        return {**self.metrics(output, target, mask), "n": int(mask.sum())}

    def use_corrections(self, calibrated: bool = True, coverage: float | None = None) -> bool:
        return use_coverage(self.conformal, coverage)

    def describe_column(self, column: str) -> str | None:
        if column.endswith(("_lower", "_upper")):
            return interval_description(self.conformal, column)
        return super().describe_column(column)

    def serving_info(self) -> dict[str, Any]:
        return {"units": f"expected count of column '{self.columns[0]}'"}

    def onnx_decoding(self) -> dict[str, Any]:
        return interval_spec(self)  # exp of the log rate, and the intervals' half-width

    def baseline_estimator(self, categorical: list[bool], seed: int) -> Any:
        return hist_gbm_regressor(categorical, seed, loss="poisson")

    def baseline_scores(self, estimator: Any, x: np.ndarray, target: np.ndarray) -> dict:
        pred = estimator.predict(x)
        return {
            "mae": float(mean_absolute_error(target, pred)),
            "r2": float(r2_score(target, pred)),
        }

    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        pred = np.exp(output.reshape(-1).astype(np.float64))
        return {self.name: pred, **self.conformal.columns(self.name, pred, self._floor())}

    def initial_bias(self) -> torch.Tensor | None:
        return torch.tensor([np.log(self.mean)], dtype=torch.float32)

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, **interval_state(self)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean = float(state["mean"])
        self.conformal.load_state(state.get("conformal"))  # absent in runs from before it
        self.fitted = True
