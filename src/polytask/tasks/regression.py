"""Regression: a real-valued target, MSE (or Huber) on a standardised, optionally log1p scale."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, cast

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from polytask.tasks._baseline import hist_gbm_regressor
from polytask.tasks._numeric import parse_numeric_labels
from polytask.tasks.base import Task, TaskOptions, safe_metric
from polytask.tasks.conformal import (
    Conformal,
    IntervalOptions,
    interval_description,
    interval_fit,
    interval_spec,
    interval_state,
    use_coverage,
)

#: skewness above which a non-negative target is modelled on a log1p scale ("auto")
SKEW_FOR_LOG = 1.0


class RegressionOptions(IntervalOptions):
    loss: Literal["mse", "huber"] = "mse"
    huber_delta: float = Field(1.0, gt=0)
    #: "auto" takes log1p for skewed non-negative targets (e.g. length of stay)
    transform: Literal["auto", "log1p", "none"] = "auto"
    #: fit the loss on (y - mean) / std of the training labels; predictions are unscaled
    standardize: bool = True


class RegressionTask(Task):
    kind = "regression"
    Options = RegressionOptions
    directions: ClassVar[dict[str, bool]] = {
        "mae": False,
        "rmse": False,
        "r2": True,
        "r2_log": True,
        "coverage": True,
        "interval_width": False,
    }
    corrections: ClassVar[tuple[str, ...]] = ("intervals",)
    headline_metrics = ("mae",)
    score_metric = "r2"
    options: RegressionOptions

    def __init__(self, name: str, columns: list[str], options: TaskOptions | None = None):
        super().__init__(name, columns, options)
        self.log = False
        self.mean = 0.0
        self.std = 1.0
        self.conformal = Conformal(self.options.intervals)

    @property
    def output_size(self) -> int:
        return 1

    def _parse(self, labels: pd.Series) -> np.ndarray:
        return parse_numeric_labels(self.name, self.kind, labels)

    def fit(self, labels: pd.Series) -> None:
        y = self._parse(labels)
        y = y[~np.isnan(y)]
        if y.size == 0:
            raise self._error(
                f"column '{labels.name}' has no labelled rows in the training split; "
                "fill some labels or drop the task"
            )
        transform = self.options.transform
        if transform == "log1p" and (y < 0).any():
            raise self._error("transform=log1p needs non-negative labels; use transform=none")
        if transform == "auto":
            skew = float(cast(float, pd.Series(y).skew())) if y.size > 2 else 0.0
            self.log = bool((y >= 0).all() and np.unique(y).size >= 10 and skew > SKEW_FOR_LOG)
        else:
            self.log = transform == "log1p"
        z = np.log1p(y) if self.log else y
        if self.options.standardize:
            with np.errstate(over="ignore", invalid="ignore"):
                self.mean = float(z.mean())
                std = float(z.std())
            if not (np.isfinite(self.mean) and np.isfinite(std)):
                raise self._error(
                    f"column '{labels.name}' holds labels too large to standardise (largest "
                    f"{np.abs(y).max():.3g}); rescale them, e.g. to other units"
                )
            self.std = std if std > 1e-12 else 1.0
        self.fitted = True

    def _forward_transform(self, y: np.ndarray) -> np.ndarray:
        z = np.log1p(np.maximum(y, 0.0)) if self.log else y
        return (z - self.mean) / self.std

    def _inverse(self, z: np.ndarray) -> np.ndarray:
        y = z * self.std + self.mean
        return np.expm1(y) if self.log else y

    def encode(self, labels: pd.Series) -> tuple[torch.Tensor, torch.Tensor]:
        y = self._parse(labels)
        mask = ~np.isnan(y)
        if self.log and (y[mask] < 0).any():
            raise self._error(
                f"column '{labels.name}' has negative labels but the model was trained on a "
                "log scale; check the data"
            )
        z = np.where(mask, self._forward_transform(np.where(mask, y, 0.0)), 0.0)
        return torch.from_numpy(z.astype(np.float32)), torch.from_numpy(mask)

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = output.squeeze(-1)
        if self.options.loss == "huber":
            return F.huber_loss(out, target, reduction="none", delta=self.options.huber_delta)
        return (out - target).square()

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = output.squeeze(-1)
        if self.options.loss == "huber":
            return F.huber_loss(out, target, delta=self.options.huber_delta)
        return F.mse_loss(out, target)

    def group_key(self) -> tuple:
        return ("regression", self.options.loss, self.options.huber_delta)

    @classmethod
    def columns_loss(
        cls, tasks: list[Task], output: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        options = tasks[0].options
        assert isinstance(options, RegressionOptions)
        if options.loss == "huber":
            return F.huber_loss(output, target, reduction="none", delta=options.huber_delta)
        return (output - target).square()

    def metrics(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        pred = self._inverse(output.reshape(-1)[mask].astype(np.float64))
        true = self._inverse(target[mask].astype(np.float64))
        out = self._regression_metrics(true, pred, log_scale=self.log)
        return {**out, **self.conformal.metrics(pred, true, self._floor())}

    def labels_in_units(self, target: np.ndarray) -> np.ndarray:
        """Encoded labels back in the label's units."""
        return self._inverse(target.astype(np.float64))

    def _floor(self) -> float | None:
        """Where the intervals' lower bound stops: 0 for a log-trained target (its
        labels are never negative), else nowhere."""
        return 0.0 if self.log else None

    def fit_corrections(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        return interval_fit(self, self.conformal, output, target, mask)

    def correction_evidence(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        if not self.conformal.fitted:
            return {}
        return {**self.metrics(output, target, mask), "n": int(mask.sum())}

    def use_corrections(self, calibrated: bool = True, coverage: float | None = None) -> bool:
        return use_coverage(self.conformal, coverage)

    @staticmethod
    def _regression_metrics(true: np.ndarray, pred: np.ndarray, log_scale: bool) -> dict:
        if true.size == 0:
            out: dict[str, Any] = {"mae": None, "rmse": None, "r2": None}
            if log_scale:
                out["r2_log"] = None
            return out
        out = {
            "mae": safe_metric(mean_absolute_error, true, pred),
            "rmse": safe_metric(lambda a, b: np.sqrt(mean_squared_error(a, b)), true, pred),
            "r2": safe_metric(r2_score, true, pred, force_finite=False) if true.size > 1 else None,
        }
        if log_scale:
            lt, lp = np.log1p(np.maximum(true, 0)), np.log1p(np.maximum(pred, 0))
            out["r2_log"] = (
                safe_metric(r2_score, lt, lp, force_finite=False) if true.size > 1 else None
            )
        return out

    def serving_info(self) -> dict[str, Any]:
        return {"units": f"the units of column '{self.columns[0]}'"}

    def onnx_decoding(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "log1p": self.log, **interval_spec(self)}

    def baseline_estimator(self, categorical: list[bool], seed: int) -> Any:
        return hist_gbm_regressor(categorical, seed)

    def baseline_scores(self, estimator: Any, x: np.ndarray, target: np.ndarray) -> dict:
        """Scored in the label's units: the baseline learns the task's own (log, scaled)
        target, as the network does."""
        pred, true = self._inverse(estimator.predict(x)), self._inverse(target)
        scores = {"mae": float(mean_absolute_error(true, pred)), "r2": float(r2_score(true, pred))}
        if self.log:
            scores["r2_log"] = float(r2_score(np.log1p(true), np.log1p(np.maximum(pred, 0))))
        return scores

    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        pred = self._inverse(output.reshape(-1).astype(np.float64))
        return {self.name: pred, **self.conformal.columns(self.name, pred, self._floor())}

    def describe_column(self, column: str) -> str | None:
        if column.endswith(("_lower", "_upper")):
            return interval_description(self.conformal, column)
        return super().describe_column(column)

    def initial_bias(self) -> torch.Tensor | None:
        return torch.zeros(1)  # standardised targets have mean 0

    def state(self) -> dict[str, Any]:
        return {"log": self.log, "mean": self.mean, "std": self.std, **interval_state(self)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.log, self.mean, self.std = (
            bool(state["log"]),
            float(state["mean"]),
            float(state["std"]),
        )
        self.conformal.load_state(state.get("conformal"))  # absent in runs from before it
        self.fitted = True
