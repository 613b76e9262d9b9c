"""Binary: two classes, BCE on a logit, optional positive-class weight."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from polytask.tasks._baseline import hist_gbm_classifier
from polytask.tasks._labels import first_values, label_keys, warn_unseen
from polytask.tasks.base import Task, TaskOptions, safe_metric, shown_classes
from polytask.tasks.calibration import (
    Temperature,
    brier,
    ece,
    fit_temperature,
    temperature_evidence,
)
from polytask.values import canonical

#: value pairs whose positive class is obvious: the first of each pair is positive
OBVIOUS_PAIRS = [("1", "0"), ("true", "false"), ("yes", "no")]


class BinaryOptions(TaskOptions):
    #: the positive class; needed unless the labels are 1/0, true/false or yes/no
    positive: str | int | float | bool | None = None
    #: weight of positive rows in the loss: a number, or "balanced" (negatives / positives)
    pos_weight: float | Literal["balanced"] | None = None
    #: probability above which the predicted label is the positive class
    threshold: float = Field(0.5, gt=0, lt=1)
    #: bce (cross-entropy) or focal: cross-entropy scaled by (1 - p_true)^gamma, which
    #: turns the loss towards the hard rows of a rare outcome (Lin et al. 2017)
    loss: Literal["bce", "focal"] = "bce"
    #: the focal loss's focusing exponent (0: plain cross-entropy)
    gamma: float = Field(2.0, ge=0)
    #: "temperature": after training, fit a temperature on the validation split that
    #: predictions divide the logit by (calibrated probabilities); "none": leave them
    calibration: Literal["temperature", "none"] = "temperature"


def binary_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    pos_weight: torch.Tensor | None,
    gamma: float | None,
) -> torch.Tensor:
    """Per-element cross-entropy on logits (positives weighted by ``pos_weight``), scaled
    by the focal factor (1 - p_true)^gamma when ``gamma`` is given."""
    bce = F.binary_cross_entropy_with_logits(
        output, target, pos_weight=pos_weight, reduction="none"
    )
    if gamma is None:
        return bce
    p = torch.sigmoid(output)
    p_true = p * target + (1 - p) * (1 - target)
    return (1 - p_true).clamp_min(0).pow(gamma) * bce


def _obvious_positive(keys: set[str]) -> str | None:
    lower = {k.lower(): k for k in keys}
    for pos, neg in OBVIOUS_PAIRS:
        if set(lower) == {pos, neg}:
            return lower[pos]
    return None


class BinaryTask(Task):
    kind = "binary"
    Options: ClassVar[type[TaskOptions]] = BinaryOptions
    directions: ClassVar[dict[str, bool]] = {
        "auroc": True,
        "accuracy": True,
        "log_loss": False,
        "ece": False,
        "brier": False,
    }
    corrections: ClassVar[tuple[str, ...]] = ("temperature",)
    headline_metrics = ("auroc",)
    score_metric = "accuracy"
    options: BinaryOptions

    def __init__(self, name: str, columns: list[str], options: TaskOptions | None = None):
        super().__init__(name, columns, options)
        self.positive_key = ""
        self.fold_case = False
        self.classes: list[Any] = []  # [negative, positive] as raw values
        self.pos_weight: float | None = None
        self.base_rate = 0.5
        self._pw: torch.Tensor | None = None
        self.temperature = Temperature()

    @property
    def output_size(self) -> int:
        return 1

    def _keys(self, labels: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        keys, miss = label_keys(labels)
        if self.fold_case:  # lower-cased once per distinct key, not once per row
            codes, uniques = pd.factorize(keys)
            lowered = np.array([str(k).lower() for k in uniques], dtype=object)
            keys = lowered[codes]
        return keys, miss

    def _option_key(self) -> str:
        """The positive option as a label key: numbers in canonical form (2.0 -> '2')."""
        value = self.options.positive
        if isinstance(value, str):
            try:
                return canonical(float(value))
            except ValueError:
                return canonical(value)
        return canonical(value)

    def fit(self, labels: pd.Series) -> None:
        keys, miss = label_keys(labels)
        # 1/0, true/false, yes/no are matched in any case (True, "true", "TRUE" are one label)
        lowered = {str(k).lower() for k in pd.unique(keys[~miss])}
        self.fold_case = len(lowered) == 2 and _obvious_positive(lowered) is not None
        keys, miss = self._keys(labels)
        present = set(keys[~miss])
        col = labels.name
        if not present:
            raise self._error(
                f"column '{col}' has no labelled rows in the training split; "
                "fill some labels or drop the task"
            )
        if len(present) == 1:
            raise self._error(
                f"column '{col}' has only one class ({next(iter(present))!r}) in the training "
                "split; a binary task needs both classes"
            )
        if len(present) > 2:
            shown = ", ".join(repr(k) for k in sorted(present)[:5])
            raise self._error(
                f"column '{col}' has {len(present)} distinct labels ({shown}); "
                "declare it as multiclass"
            )
        if self.options.positive is not None:
            pos = self._option_key()
            pos = pos.lower() if self.fold_case else pos
            matches = [k for k in present if k == pos or k.lower() == pos.lower()]
            if not matches:
                raise self._error(
                    f"positive={self.options.positive!r} is not one of the labels in column "
                    f"'{col}' ({', '.join(repr(k) for k in sorted(present))})"
                )
            pos = matches[0]
        else:
            obvious = _obvious_positive(present)
            if obvious is None:
                a, b = sorted(present)
                raise self._error(
                    f"cannot tell which label of column '{col}' is positive ({a!r} or {b!r}); "
                    f"say so with '{col}:binary:positive={b}' (or 'positive: {b}' in the config)"
                )
            pos = obvious
        neg = next(k for k in present if k != pos)
        raw: dict[str, object] = {}
        for k, v in first_values(labels, miss).items():
            raw.setdefault(k.lower() if self.fold_case else k, v)
        self.positive_key = pos
        self.classes = [raw[neg], raw[pos]]
        y = keys[~miss] == pos
        self.base_rate = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
        if self.options.pos_weight == "balanced":
            self.pos_weight = float((1 - self.base_rate) / self.base_rate)
        elif self.options.pos_weight is not None:
            self.pos_weight = float(self.options.pos_weight)
        self._set_pw()
        self.fitted = True

    def _set_pw(self) -> None:
        self._pw = None if self.pos_weight is None else torch.tensor(self.pos_weight)

    def encode(self, labels: pd.Series) -> tuple[torch.Tensor, torch.Tensor]:
        keys, miss = self._keys(labels)
        neg_key = canonical(self.classes[0])
        neg_key = neg_key.lower() if self.fold_case else neg_key
        known = (keys == self.positive_key) | (keys == neg_key)
        unknown = ~miss & ~known
        if unknown.any():
            expected = f"{self.classes[1]!r} (positive) and {self.classes[0]!r}"
            warn_unseen(self.name, labels, unknown, expected)
        mask = ~miss & known
        y = (keys == self.positive_key).astype(np.float32)
        return torch.from_numpy(y), torch.from_numpy(mask)

    @property
    def _gamma(self) -> float | None:
        return self.options.gamma if self.options.loss == "focal" else None

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_loss(output.squeeze(-1), target, self._pw, self._gamma)

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._gamma is None:
            return F.binary_cross_entropy_with_logits(
                output.squeeze(-1), target, pos_weight=self._pw
            )
        return self.elementwise_loss(output, target).mean()

    def group_key(self) -> tuple | None:
        # tasks in one group share one loss call: the same loss (and focal exponent)
        return ("binary",) if self._gamma is None else ("binary", "focal", self._gamma)

    @classmethod
    def columns_loss(
        cls, tasks: list[Task], output: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        weights = [t._pw if isinstance(t, BinaryTask) else None for t in tasks]
        pos_weight = None
        if any(w is not None for w in weights):  # one positive weight per column
            pos_weight = torch.stack(
                [
                    torch.ones((), dtype=output.dtype) if w is None else w.to(output.dtype)
                    for w in weights
                ]
            ).to(output.device)
        first = tasks[0]
        gamma = first._gamma if isinstance(first, BinaryTask) else None
        return binary_loss(output, target, pos_weight, gamma)

    def probabilities(self, output: np.ndarray) -> np.ndarray:
        """P(positive) per row (of the logit over the temperature, where one is fitted)."""
        z = self.temperature.apply(output.reshape(-1).astype(np.float64))
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-z))

    def serving_info(self) -> dict[str, Any]:
        classes = list(self.classes)
        return {"classes": classes, "positive": classes[1], "threshold": self.options.threshold}

    def describe_prediction(self) -> str:
        return f"predicted class, one of {shown_classes(self.classes)}"

    def onnx_decoding(self) -> dict[str, Any] | None:
        negative, positive = self.classes
        t = self.temperature.active
        return {
            "negative": negative,
            "positive": positive,
            "threshold": self.options.threshold,
            "temperature": 1.0 if t is None else t,
        }

    def class_labels(self) -> list[Any]:
        return list(self.classes)

    def class_probabilities(self, output: np.ndarray) -> np.ndarray:
        p = self.probabilities(output)
        return np.column_stack([1.0 - p, p])

    def baseline_estimator(self, categorical: list[bool], seed: int) -> Any:
        return hist_gbm_classifier(categorical, seed)

    def baseline_scores(self, estimator: Any, x: np.ndarray, target: np.ndarray) -> dict:
        proba = estimator.predict_proba(x)
        return {"auroc": float(roc_auc_score(target, proba[:, 1]))}

    def metrics(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        p = self.probabilities(output)[mask]
        y = target[mask].astype(int)
        if y.size == 0:
            return dict.fromkeys(("auroc", "accuracy", "log_loss", "ece", "brier"))
        return {
            "auroc": safe_metric(roc_auc_score, y, p) if np.unique(y).size == 2 else None,
            "accuracy": safe_metric(accuracy_score, y, p >= self.options.threshold),
            "log_loss": safe_metric(log_loss, y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]),
            "ece": ece(p, y),
            "brier": brier(p, y),
        }

    def fit_corrections(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        if self.options.calibration == "none":
            return {}
        fitted = fit_temperature(output[:, 0][mask], target[mask], binary=True)
        self.temperature.value = fitted["temperature"]
        return fitted

    def correction_evidence(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        return temperature_evidence(self, self.temperature, output, target, mask)

    def use_corrections(self, calibrated: bool = True, coverage: float | None = None) -> bool:
        self.temperature.enabled = calibrated
        return False

    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        p = self.probabilities(output)
        labels = np.array(self.classes, dtype=object)[(p >= self.options.threshold).astype(int)]
        return {self.name: labels, f"{self.name}_proba": p}

    def initial_bias(self) -> torch.Tensor | None:
        return torch.tensor([np.log(self.base_rate / (1 - self.base_rate))], dtype=torch.float32)

    def state(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "positive_key": self.positive_key,
            "fold_case": self.fold_case,
            "pos_weight": self.pos_weight,
            "base_rate": self.base_rate,
            "temperature": self.temperature.value,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes = list(state["classes"])
        self.positive_key = str(state["positive_key"])
        self.fold_case = bool(state.get("fold_case", False))
        self.pos_weight = state["pos_weight"]
        self.base_rate = float(state["base_rate"])
        self.temperature.value = state.get("temperature")  # None in runs from before it
        self._set_pw()
        self.fitted = True
