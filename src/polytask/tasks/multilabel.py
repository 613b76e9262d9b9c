"""Multilabel: any subset of K labels, one sigmoid per label.

Labels come either from one column of ``|``-separated names (``a|c``), or, in the config,
from several 0/1 columns (``columns: [a, b, c]``). An empty cell is an unlabelled row.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.metrics import f1_score

from polytask.tasks.base import Task, TaskOptions, safe_metric, shown_classes
from polytask.values import FALSE_WORDS, TRUE_WORDS, canonical_series, missing_mask


class MultilabelOptions(TaskOptions):
    #: separator of label names in the one-column form
    sep: str = Field("|", min_length=1)
    threshold: float = Field(0.5, gt=0, lt=1)


class MultilabelTask(Task):
    kind = "multilabel"
    Options = MultilabelOptions
    directions: ClassVar[dict[str, bool]] = {"micro_f1": True, "macro_f1": True}
    headline_metrics = ("macro_f1",)
    multi_column = True
    score_metric = "micro_f1"
    options: MultilabelOptions

    def __init__(self, name: str, columns: list[str], options: TaskOptions | None = None):
        super().__init__(name, columns, options)
        self.classes: list[str] = []
        self.rates: list[float] = []

    @property
    def output_size(self) -> int:
        return len(self.classes)

    @property
    def wide(self) -> bool:
        """True for the several-0/1-columns form."""
        return len(self.columns) > 1

    # -- parsing ---------------------------------------------------------------------------
    def _split(self, labels: pd.Series) -> tuple[list[list[str]], np.ndarray]:
        miss = missing_mask(labels)
        sep = self.options.sep
        sets = [
            [] if m else [p.strip() for p in str(v).split(sep) if p.strip()]
            for v, m in zip(labels, miss, strict=True)
        ]
        return sets, miss

    def _wide_matrix(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(values, mask) of shape (N, K) from 0/1 columns; NaN cells are unlabelled."""
        vals = np.zeros(frame.shape, dtype=np.float32)
        mask = np.zeros(frame.shape, dtype=bool)
        for j, col in enumerate(frame.columns):
            s = frame[col]
            miss = missing_mask(s)
            keys = np.char.lower(canonical_series(s, miss).astype(str))
            pos = np.isin(keys, list(TRUE_WORDS))
            neg = np.isin(keys, list(FALSE_WORDS))
            bad = ~miss & ~pos & ~neg
            if bad.any():
                shown = ", ".join(repr(v) for v in pd.unique(s[bad])[:3])
                raise self._error(
                    f"multilabel column '{col}' must hold 0/1 (or true/false), found {shown}"
                )
            vals[:, j] = pos
            mask[:, j] = ~miss
        return vals, mask

    def fit(self, labels: pd.Series | pd.DataFrame) -> None:
        if self.wide:
            vals, mask = self._wide_matrix(cast(pd.DataFrame, labels))
            if not mask.any():
                raise self._error("no labelled rows in the training split; fill some labels")
            self.classes = list(self.columns)
            rates = (vals * mask).sum(0) / np.maximum(mask.sum(0), 1)
        else:
            sets, miss = self._split(cast(pd.Series, labels))
            if miss.all():
                raise self._error(
                    f"column '{labels.name}' has no labelled rows in the training split; "
                    "fill some labels or drop the task"
                )
            names = sorted({n for s in sets for n in s})
            if len(names) < 2:
                raise self._error(
                    f"column '{labels.name}' names fewer than two labels ({names}); a multilabel "
                    f"task needs several, separated by '{self.options.sep}' (or use binary)"
                )
            self.classes = names
            labelled = [s for s, m in zip(sets, miss, strict=True) if not m]
            rates = np.array([sum(n in s for s in labelled) for n in names]) / len(labelled)
        self.rates = np.clip(rates, 1e-4, 1 - 1e-4).tolist()
        self.fitted = True

    def encode(self, labels: pd.Series | pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        if self.wide:
            vals, mask = self._wide_matrix(cast(pd.DataFrame, labels))
            return torch.from_numpy(vals), torch.from_numpy(mask)
        sets, miss = self._split(cast(pd.Series, labels))
        index = {n: i for i, n in enumerate(self.classes)}
        vals = np.zeros((len(sets), len(self.classes)), dtype=np.float32)
        for r, s in enumerate(sets):
            for n in s:
                i = index.get(n)
                if i is not None:
                    vals[r, i] = 1.0
        mask = np.repeat(~miss[:, None], len(self.classes), axis=1)
        return torch.from_numpy(vals), torch.from_numpy(mask)

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, target, reduction="none")

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, target)

    def probabilities(self, output: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-output.astype(np.float64)))

    def serving_info(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "threshold": self.options.threshold,
            "separator": self.options.sep,
        }

    def describe_prediction(self) -> str:
        shown = shown_classes(self.classes)
        return f"predicted labels among {shown}, joined by {self.options.sep!r}"

    def onnx_decoding(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "threshold": self.options.threshold,
            "separator": self.options.sep,
            "indicator_columns": self.wide,
        }

    def class_labels(self) -> list[Any]:
        return list(self.classes)

    def class_probabilities(self, output: np.ndarray) -> np.ndarray:
        """One independent probability per label (rows need not sum to 1)."""
        return self.probabilities(output)

    def metrics(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        """Micro-F1 over every known cell; macro-F1 as the mean of each label's F1 over the
        rows where that label is known."""
        if not mask.any():
            return {"micro_f1": None, "macro_f1": None}
        pred = self.probabilities(output) >= self.options.threshold
        y = target.astype(int)
        micro = safe_metric(f1_score, y[mask], pred[mask], zero_division=0)
        per_label = [
            f1_score(y[mask[:, j], j], pred[mask[:, j], j], zero_division=0)
            for j in range(y.shape[1])
            if mask[:, j].any()
        ]
        return {"micro_f1": micro, "macro_f1": float(np.mean(per_label))}

    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        p = self.probabilities(output)
        on = p >= self.options.threshold
        out: dict[str, np.ndarray] = {}
        names = np.array(self.classes, dtype=object)
        out[self.name] = np.array([self.options.sep.join(names[row]) for row in on], dtype=object)
        if self.wide:
            for i, c in enumerate(self.classes):
                out[f"{self.name}_{c}"] = on[:, i].astype(int)
        for i, c in enumerate(self.classes):
            out[f"{self.name}_proba_{c}"] = p[:, i]
        return out

    def initial_bias(self) -> torch.Tensor | None:
        r = torch.tensor(self.rates, dtype=torch.float32)
        return torch.log(r / (1 - r))

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes, "rates": self.rates}

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes = list(state["classes"])
        self.rates = list(state["rates"])
        self.fitted = True
