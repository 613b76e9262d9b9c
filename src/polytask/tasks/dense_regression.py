"""Dense regression: a real value per pixel (depth, density, visible area ...), L1 or MSE
over labelled pixels on a standardised scale; MAE and RMSE in the label's own units.
Labels are H x W maps (.npy arrays or 8/16-bit images); NaN pixels carry no label."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from polytask.tasks._dense import read_maps
from polytask.tasks.base import Task, TaskOptions


class DenseRegressionOptions(TaskOptions):
    loss: Literal["l1", "mse"] = "l1"
    #: fit the loss on (y - mean) / std of the training pixels; predictions are unscaled
    standardize: bool = True


class DenseRegressionTask(Task):
    kind = "dense_regression"
    Options = DenseRegressionOptions
    directions: ClassVar[dict[str, bool]] = {"mae": False, "rmse": False}
    headline_metrics = ("mae",)
    #: scikit-learn's score is the negated MAE (higher is better, as sklearn maximises)
    score_metric = "mae"
    dense = True
    options: DenseRegressionOptions

    def __init__(self, name: str, columns: list[str], options: TaskOptions | None = None):
        super().__init__(name, columns, options)
        self.mean = 0.0
        self.std = 1.0
        self.shape: tuple[int, int] | None = None

    @property
    def output_size(self) -> int:
        return 1

    def _read(self, labels: pd.Series, shape: tuple[int, int] | None) -> tuple:
        maps, present = read_maps(self.name, labels, shape)
        maps = maps.astype(np.float64)
        mask = present[:, None, None] & np.isfinite(maps)
        return maps, mask

    def fit(self, labels: pd.Series) -> None:
        maps, mask = self._read(labels, None)
        values = maps[mask]
        if values.size == 0:
            raise self._error(f"column '{labels.name}' has no labelled pixels in training")
        if self.options.standardize:
            self.mean = float(values.mean())
            std = float(values.std())
            self.std = std if std > 1e-12 else 1.0
        self.shape = (int(maps.shape[1]), int(maps.shape[2]))
        self.fitted = True

    def encode(self, labels: pd.Series) -> tuple[torch.Tensor, torch.Tensor]:
        maps, mask = self._read(labels, self.shape)
        z = np.where(mask, (np.where(mask, maps, 0.0) - self.mean) / self.std, 0.0)
        return torch.from_numpy(z.astype(np.float32)), torch.from_numpy(mask)

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = output[:, 0] - target
        return diff.abs() if self.options.loss == "l1" else diff.square()

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.options.loss == "l1":
            return F.l1_loss(output[:, 0], target)
        return F.mse_loss(output[:, 0], target)

    def metrics(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        if output.ndim != 4 or not mask.any():
            return {"mae": None, "rmse": None}
        m = mask.astype(bool)
        err = (output[:, 0][m].astype(np.float64) - target[m]) * self.std
        return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}

    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: output[:, 0].astype(np.float64) * self.std + self.mean}

    def state(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "shape": list(self.shape) if self.shape else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = float(state["mean"]), float(state["std"])
        shape = state.get("shape")
        self.shape = (int(shape[0]), int(shape[1])) if shape else None
        self.fitted = True
