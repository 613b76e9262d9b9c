"""Segmentation: a class per pixel, cross-entropy over labelled pixels; mIoU and pixel
accuracy. Labels are H x W maps of integer class ids (PNG masks or .npy arrays)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field

from polytask.tasks._dense import read_maps
from polytask.tasks.base import Task, TaskOptions

#: refuse maps with more classes than this unless ``max_classes`` is raised
MAX_CLASSES = 256


class SegmentationOptions(TaskOptions):
    #: number of classes; None takes the largest class id in training + 1
    classes: int | None = Field(None, ge=2)
    #: pixels with this value carry no label (e.g. object borders)
    ignore_index: int | None = 255
    max_classes: int = Field(MAX_CLASSES, ge=2)


class SegmentationTask(Task):
    kind = "segmentation"
    Options = SegmentationOptions
    directions: ClassVar[dict[str, bool]] = {"miou": True, "pixel_accuracy": True}
    headline_metrics = ("miou", "pixel_accuracy")
    score_metric = "miou"
    dense = True
    options: SegmentationOptions

    def __init__(self, name: str, columns: list[str], options: TaskOptions | None = None):
        super().__init__(name, columns, options)
        self.n_classes = self.options.classes or 2
        self.shape: tuple[int, int] | None = None

    @property
    def output_size(self) -> int:
        return self.n_classes

    def _labelled(self, maps: np.ndarray, present: np.ndarray) -> np.ndarray:
        mask = np.broadcast_to(present[:, None, None], maps.shape).copy()
        if self.options.ignore_index is not None:
            mask &= maps != self.options.ignore_index
        return mask

    def fit(self, labels: pd.Series) -> None:
        maps, present = read_maps(self.name, labels, None)
        mask = self._labelled(maps, present)
        values = maps[mask]
        if values.size == 0:
            raise self._error(f"column '{labels.name}' has no labelled pixels in training")
        if not np.issubdtype(values.dtype, np.integer) and not np.all(values == np.round(values)):
            raise self._error(
                f"column '{labels.name}' holds non-integer pixel values; a segmentation map "
                "holds class ids 0, 1, 2, ... (use dense_regression for real values)"
            )
        if values.min() < 0:
            raise self._error(f"column '{labels.name}' holds negative class ids")
        top = int(values.max()) + 1
        if self.options.classes is None:
            self.n_classes = max(top, 2)
        elif top > self.options.classes:
            raise self._error(
                f"class id {top - 1} found but classes={self.options.classes}; raise classes"
            )
        if self.n_classes > self.options.max_classes:
            raise self._error(
                f"{self.n_classes} classes is more than max_classes={self.options.max_classes}"
            )
        self.shape = (int(maps.shape[1]), int(maps.shape[2]))
        self.fitted = True

    def encode(self, labels: pd.Series) -> tuple[torch.Tensor, torch.Tensor]:
        maps, present = read_maps(self.name, labels, self.shape)
        mask = self._labelled(maps, present)
        if mask.any() and (maps[mask].max() >= self.n_classes or maps[mask].min() < 0):
            raise self._error(
                f"column '{labels.name}' holds class ids outside 0..{self.n_classes - 1}, "
                "the classes the model was trained on"
            )
        target = np.where(mask, maps, 0).astype(np.int64)
        return torch.from_numpy(target), torch.from_numpy(mask)

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target, reduction="none")

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def confusion(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """K x K counts of (true class, predicted class) over labelled pixels."""
        k = self.n_classes
        pred = output.argmax(axis=1)[mask]
        true = target[mask].astype(np.int64)
        return np.bincount(true * k + pred, minlength=k * k).reshape(k, k)

    def metrics(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        if output.ndim != 4 or not mask.any():
            return {"miou": None, "pixel_accuracy": None}
        cm = self.confusion(output, target, mask.astype(bool))
        tp = np.diag(cm).astype(np.float64)
        union = cm.sum(0) + cm.sum(1) - tp
        seen = union > 0  # classes absent from both truth and prediction don't count
        return {
            "miou": float((tp[seen] / union[seen]).mean()),
            "pixel_accuracy": float(tp.sum() / cm.sum()),
        }

    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: output.argmax(axis=1).astype(np.int64)}

    def onnx_decoding(self) -> dict[str, Any]:
        return {"classes": self.n_classes}  # the decoder takes each pixel's argmax

    def state(self) -> dict[str, Any]:
        return {"classes": self.n_classes, "shape": list(self.shape) if self.shape else None}

    def load_state(self, state: dict[str, Any]) -> None:
        self.n_classes = int(state["classes"])
        shape = state.get("shape")
        self.shape = (int(shape[0]), int(shape[1])) if shape else None
        self.fitted = True
