"""Multiclass: one of K classes, cross-entropy; labels of any type mapped and mapped back."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.metrics import accuracy_score, f1_score

from polytask.tasks._baseline import hist_gbm_classifier
from polytask.tasks._labels import first_values, label_keys, sort_key, warn_unseen
from polytask.tasks.base import Task, TaskOptions, safe_metric, shown_classes
from polytask.tasks.calibration import (
    Temperature,
    brier,
    ece,
    fit_temperature,
    temperature_evidence,
)

#: refuse label columns with more classes than this unless max_classes is raised
MAX_CLASSES = 1000


class MulticlassOptions(TaskOptions):
    #: "balanced" weighs each class by n / (K * n_class) in the loss
    class_weight: Literal["balanced"] | None = None
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    max_classes: int = Field(MAX_CLASSES, ge=2)
    #: "temperature": after training, fit a temperature on the validation split that
    #: predictions divide the logits by (calibrated probabilities); "none": leave them
    calibration: Literal["temperature", "none"] = "temperature"


class MulticlassTask(Task):
    kind = "multiclass"
    Options = MulticlassOptions
    directions: ClassVar[dict[str, bool]] = {
        "accuracy": True,
        "macro_f1": True,
        "ece": False,
        "brier": False,
    }
    corrections: ClassVar[tuple[str, ...]] = ("temperature",)
    headline_metrics = ("accuracy",)
    score_metric = "accuracy"
    options: MulticlassOptions

    def __init__(self, name: str, columns: list[str], options: TaskOptions | None = None):
        super().__init__(name, columns, options)
        self.keys: list[str] = []
        self.classes: list[Any] = []
        self.priors: list[float] = []
        self.class_weights: list[float] | None = None
        self._cw: torch.Tensor | None = None
        self.temperature = Temperature()

    @property
    def output_size(self) -> int:
        return len(self.classes)

    def fit(self, labels: pd.Series) -> None:
        keys, miss = label_keys(labels)
        col = labels.name
        counts = pd.Series(keys[~miss]).value_counts()
        if counts.empty:
            raise self._error(
                f"column '{col}' has no labelled rows in the training split; "
                "fill some labels or drop the task"
            )
        if len(counts) < 2:
            raise self._error(
                f"column '{col}' has only one class ({counts.index[0]!r}) in the training "
                "split; a classification task needs at least two"
            )
        if len(counts) > self.options.max_classes:
            raise self._error(
                f"column '{col}' has {len(counts)} distinct labels, more than max_classes="
                f"{self.options.max_classes}; is it an identifier or a number (use regression)?"
            )
        raw = first_values(labels, miss)
        order = sorted(counts.index, key=lambda k: sort_key(raw[k]))
        self.keys = list(order)
        self.classes = [raw[k] for k in order]
        n = counts[order].to_numpy(dtype=np.float64)
        self.priors = (n / n.sum()).tolist()
        if self.options.class_weight == "balanced":
            self.class_weights = (n.sum() / (len(n) * n)).tolist()
        self._set_cw()
        self.fitted = True

    def _set_cw(self) -> None:
        self._cw = None if self.class_weights is None else torch.tensor(self.class_weights)

    def encode(self, labels: pd.Series) -> tuple[torch.Tensor, torch.Tensor]:
        keys, miss = label_keys(labels)
        index = {k: i for i, k in enumerate(self.keys)}
        codes = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
        unknown = ~miss & (codes < 0)
        if unknown.any():
            warn_unseen(self.name, labels, unknown, shown_classes(self.classes))
        mask = codes >= 0
        return torch.from_numpy(np.where(mask, codes, 0)), torch.from_numpy(mask)

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            output,
            target,
            weight=self._cw,
            reduction="none",
            label_smoothing=self.options.label_smoothing,
        )

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._cw is not None:  # torch's weighted mean divides by the weights' sum
            return super().mean_loss(output, target)
        return F.cross_entropy(output, target, label_smoothing=self.options.label_smoothing)

    def probabilities(self, output: np.ndarray) -> np.ndarray:
        z = self.temperature.apply(output.astype(np.float64))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def serving_info(self) -> dict[str, Any]:
        return {"classes": list(self.classes)}

    def describe_prediction(self) -> str:
        return f"predicted class, one of {shown_classes(self.classes)}"

    def onnx_decoding(self) -> dict[str, Any]:
        t = self.temperature.active
        return {"classes": list(self.classes), "temperature": 1.0 if t is None else t}

    def class_labels(self) -> list[Any]:
        return list(self.classes)

    def class_probabilities(self, output: np.ndarray) -> np.ndarray:
        return self.probabilities(output)

    def baseline_estimator(self, categorical: list[bool], seed: int) -> Any:
        return hist_gbm_classifier(categorical, seed)

    def baseline_scores(self, estimator: Any, x: np.ndarray, target: np.ndarray) -> dict:
        pred = estimator.classes_[estimator.predict_proba(x).argmax(1)]
        return {
            "accuracy": float(accuracy_score(target, pred)),
            "macro_f1": float(f1_score(target, pred, average="macro")),
        }

    def metrics(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        y = target[mask]
        if y.size == 0:
            return dict.fromkeys(("accuracy", "macro_f1", "ece", "brier"))
        pred = output[mask].argmax(axis=1)
        p = self.probabilities(output[mask])
        return {
            "accuracy": safe_metric(accuracy_score, y, pred),
            "macro_f1": safe_metric(f1_score, y, pred, average="macro", zero_division=0),
            "ece": ece(p, y),
            "brier": brier(p, y),
        }

    def fit_corrections(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        if self.options.calibration == "none":
            return {}
        fitted = fit_temperature(output[mask], target[mask], binary=False)
        self.temperature.value = fitted["temperature"]
        return fitted

    def correction_evidence(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        return temperature_evidence(self, self.temperature, output, target, mask)

    def use_corrections(self, calibrated: bool = True, coverage: float | None = None) -> bool:
        self.temperature.enabled = calibrated
        return False

    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        p = self.probabilities(output)
        out: dict[str, np.ndarray] = {
            self.name: np.array(self.classes, dtype=object)[p.argmax(axis=1)]
        }
        for i, c in enumerate(self.classes):
            out[f"{self.name}_proba_{c}"] = p[:, i]
        return out

    def initial_bias(self) -> torch.Tensor | None:
        return torch.log(torch.tensor(self.priors, dtype=torch.float32))

    def state(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "classes": self.classes,
            "priors": self.priors,
            "class_weights": self.class_weights,
            "temperature": self.temperature.value,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.keys = list(state["keys"])
        self.classes = list(state["classes"])
        self.priors = list(state["priors"])
        self.class_weights = state["class_weights"]
        self.temperature.value = state.get("temperature")  # None in runs from before it
        self._set_cw()
        self.fitted = True
