"""A scikit-learn estimator over polytask: one network for several target columns.

>>> from polytask.sklearn import MultiTaskEstimator
>>> est = MultiTaskEstimator(tasks={"los": "regression", "died": "binary"}, epochs=30)
>>> est.fit(X, Y)                      # X: features, Y: a DataFrame with columns los, died
>>> est.predict(X_new)                 # DataFrame: one column per task, X_new's index
>>> est.score(X_test, Y_test)          # mean over tasks of R² / accuracy / micro-F1

It follows scikit-learn's rules: ``__init__`` stores its arguments as given and checks
nothing; ``fit`` validates them (a :class:`polytask.PolytaskError`, a ``ValueError``,
names the problem) and sets attributes ending in ``_``. So it clones with
:func:`sklearn.base.clone`, sits at the end of a :class:`~sklearn.pipeline.Pipeline`
and works with :func:`~sklearn.model_selection.cross_val_score`, whose default scorer
is :meth:`MultiTaskEstimator.score`.

This module imports scikit-learn; ``import polytask`` alone does not import it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from polytask.api import build_config, train_run
from polytask.config import parse_config, parse_task_spec
from polytask.config.keys import KEYWORDS
from polytask.errors import PolytaskError
from polytask.features.io import check_frame
from polytask.model import MultiTaskModel
from polytask.tasks._labels import first_values, label_keys, sort_key
from polytask.tasks.binary import OBVIOUS_PAIRS


def infer_kind(values: pd.Series) -> str:
    """The task kind for a target column when none is given: two distinct values are
    ``binary``; other numbers ``regression``; other text or categories ``multiclass``.
    Integer class codes with more than two values need an explicit ``multiclass``."""
    keys, miss = label_keys(values)
    distinct = len(set(keys[~miss]))
    if distinct == 0:
        raise PolytaskError(
            f"target column '{values.name}' has no labels; fill some or leave the column out"
        )
    if distinct == 2 or pd.api.types.is_bool_dtype(values.dtype):
        return "binary"
    if pd.api.types.is_numeric_dtype(values.dtype):
        return "regression"
    return "multiclass"


def _positive_for(values: pd.Series) -> Any:
    """scikit-learn's rule for an inferred binary target: where the pair is not 1/0,
    true/false or yes/no, the larger of the two sorted labels is the positive class."""
    keys, miss = label_keys(values)
    present = {k.lower() for k in keys[~miss]}
    if any(present == {a, b} for a, b in OBVIOUS_PAIRS):
        return None
    raw = first_values(values, miss)
    return sorted(raw.values(), key=sort_key)[-1]


def _has_classification_task(est: MultiTaskEstimator) -> bool:
    """predict_proba exists before fit and, after it, where a task is a classification."""
    return not hasattr(est, "classes_") or bool(est.classes_)


class MultiTaskEstimator(BaseEstimator):
    """A multi-task neural network as a scikit-learn estimator.

    Parameters (stored as given; validated by :meth:`fit`):

    tasks
        Which target columns of ``y`` are tasks and of what kind: ``None`` (every column
        of ``y``, kind inferred by :func:`infer_kind`), a mapping ``{column: kind}`` or
        ``{column: {"kind": ..., option: value}}``, or a list of ``"COLUMN:KIND[:OPT=V]"``
        specs or bare column names (kind inferred). With an array ``y`` the names are
        taken from ``tasks`` in order, else ``y0, y1, ...``.
    config
        A config file path or mapping used as the base; the parameters below override
        its keys when they are not None (None: the config's value, else polytask's default).
    epochs, batch_size, lr, weight_decay, patience, seed, device, hidden, dropout,
    architecture, balancing
        As the config keys of the same name (``balancing`` a method name or a mapping
        ``{"method": ..., option: value}``).
    validation_fraction
        Share of the rows ``fit`` holds out for early stopping and model selection
        (None: 0.15; 0: no hold-out, early stopping watches the training loss).
    tracking
        The config's ``tracking`` section (TensorBoard folder, MLflow store), or None.
    verbose
        Show the progress bar and per-epoch lines.

    Attributes set by ``fit``: ``model_`` (the :class:`polytask.MultiTaskModel`),
    ``task_names_``, ``task_kinds_`` ({task: kind}), ``classes_`` ({task: array of class
    labels} for classification tasks; for binary ``[negative, positive]``),
    ``n_features_in_``, ``feature_names_in_`` (when X had string column names),
    ``history_`` (one record per epoch).
    """

    def __init__(
        self,
        tasks: Mapping[str, Any] | Sequence[str] | None = None,
        *,
        config: Mapping[str, Any] | str | Path | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        patience: int | None = None,
        seed: int | None = None,
        device: str | None = None,
        hidden: Sequence[int] | None = None,
        dropout: float | None = None,
        architecture: str | None = None,
        balancing: str | Mapping[str, Any] | None = None,
        validation_fraction: float | None = None,
        tracking: Mapping[str, Any] | None = None,
        verbose: bool = False,
    ):
        # stored as given (scikit-learn's rule), every parameter of the signature
        for name, value in locals().items():
            if name != "self":
                setattr(self, name, value)

    # -- scikit-learn protocol -----------------------------------------------------------------
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {
            "requires_y": True,
            "multioutput": True,
            "allow_nan": True,
            "X_types": ["2darray", "categorical", "string"],
        }

    # -- inputs ----------------------------------------------------------------------------------
    def _features(self, X: Any, reset: bool) -> pd.DataFrame:
        """X as a DataFrame with string column names; records the names on ``reset``."""
        if hasattr(X, "toarray") or hasattr(X, "tocsr"):
            raise PolytaskError(
                f"{type(self).__name__} takes dense input; convert sparse X with X.toarray() "
                "(or a OneHotEncoder with sparse_output=False)"
            )
        if isinstance(X, pd.DataFrame):
            df = X.copy(deep=False)
            named = all(isinstance(c, str) for c in df.columns)
        else:
            arr = np.asarray(X)
            if arr.ndim != 2:
                raise PolytaskError(
                    f"X must be 2-D (rows x features), got an array of shape {arr.shape}; "
                    "Reshape your data: X.reshape(-1, 1) for a single feature"
                )
            if arr.dtype.kind == "c":
                raise PolytaskError("Complex data not supported; give real numbers or text")
            df = pd.DataFrame(arr)
            named = False
        if reset:
            self.n_features_in_ = df.shape[1]
            if named:
                self.feature_names_in_ = np.asarray(df.columns, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        if not named:
            if df.shape[1] != self.n_features_in_:
                raise PolytaskError(
                    f"X has {df.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input"
                )
            names = getattr(self, "feature_names_in_", None)
            df.columns = list(names) if names is not None else [f"x{i}" for i in range(df.shape[1])]
        if df.shape[1] == 0:
            raise PolytaskError(
                f"X has 0 feature(s) (shape={df.shape}) while a minimum of 1 is required."
            )
        if df.shape[0] == 0:
            raise PolytaskError(f"X has 0 samples (shape={df.shape}); a minimum of 1 is required")
        return check_frame(df, "X")

    def _task_names_for_array(self, width: int) -> list[str]:
        spec = self.tasks
        if spec is None:
            return [f"y{i}" for i in range(width)]
        names = list(spec) if isinstance(spec, Mapping) else [str(s).split(":")[0] for s in spec]
        if len(names) != width:
            raise PolytaskError(
                f"y has {width} column(s) but tasks lists {len(names)}; give one task per column"
            )
        return names

    def _targets(self, y: Any, n_rows: int) -> pd.DataFrame:
        """y as a DataFrame with one column per target, positionally aligned with X."""
        if y is None:
            raise PolytaskError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        if isinstance(y, pd.DataFrame):
            frame = y.copy(deep=False)
            frame.columns = [str(c) for c in frame.columns]
        elif isinstance(y, pd.Series) and y.name is not None and self.tasks is None:
            frame = y.to_frame(name=str(y.name))
        elif isinstance(y, Mapping):
            frame = pd.DataFrame({str(k): np.asarray(v) for k, v in y.items()})
        else:
            arr = np.asarray(y)
            if arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            if arr.ndim != 2:
                raise PolytaskError(f"y must be 1-D or 2-D, got an array of shape {arr.shape}")
            frame = pd.DataFrame(arr, columns=self._task_names_for_array(arr.shape[1]))
        if len(frame) != n_rows:
            raise PolytaskError(
                f"X has {n_rows} rows but y has {len(frame)}; give one target row per sample"
            )
        if frame.shape[1] == 0:
            raise PolytaskError("y has no columns; give at least one target column")
        # an object array of numbers and labels (Y.to_numpy()) gets its numbers back
        return frame.infer_objects().reset_index(drop=True)

    def _task_specs(self, targets: pd.DataFrame) -> list[dict[str, Any]]:
        spec = self.tasks
        if spec is None:
            entries: list[tuple[str, Any]] = [(c, None) for c in targets.columns]
        elif isinstance(spec, Mapping):
            entries = [(str(k), v) for k, v in spec.items()]
        elif isinstance(spec, str) or not isinstance(spec, Sequence):
            raise PolytaskError(
                "tasks must be None, a mapping {column: kind} or a list of 'COLUMN:KIND' specs, "
                f"got {type(spec).__name__}"
            )
        else:
            entries = []
            for s in spec:
                if not isinstance(s, str):
                    raise PolytaskError(f"tasks: each entry must be a string, got {s!r}")
                entries.append((s, None) if ":" not in s else ("", parse_task_spec(s)))
        out = []
        for column, value in entries:
            if not column:
                task = dict(value)  # a parsed COLUMN:KIND spec
            elif value is None or value == "auto":
                task = {"name": column, "column": column}
            elif isinstance(value, str):
                task = {"name": column, "column": column, "kind": value}
            elif isinstance(value, Mapping):
                task = {"name": column, "column": column, **dict(value)}
            else:
                raise PolytaskError(
                    f"tasks['{column}'] must be a kind name or a mapping of options, got {value!r}"
                )
            col: str = task.get("column") or task["name"]
            if col not in targets.columns:
                raise PolytaskError(
                    f"task column '{col}' is not in y (y has {', '.join(targets.columns)})"
                )
            if task.get("kind") in (None, "auto"):
                task["kind"] = infer_kind(targets[col])
                if task["kind"] == "binary" and "positive" not in task:
                    positive = _positive_for(targets[col])
                    if positive is not None:
                        task["positive"] = positive
            out.append(task)
        used = {t.get("column") or t["name"] for t in out}
        extra = [c for c in targets.columns if c not in used]
        if extra:
            raise PolytaskError(
                f"y column '{extra[0]}' is not a task; add it to tasks or leave it out of y"
            )
        return out

    def _config(self, specs: list[dict[str, Any]]) -> Any:
        """The run config: the parameters that are API keywords (config.keys.KEYWORDS)
        override the base config's keys; the hold-out replaces its data section."""
        params = inspect.signature(type(self).__init__).parameters
        keys = [k for k in params if k in KEYWORDS and k != "tracking"]
        cfg = build_config(self.config, specs, **{k: getattr(self, k) for k in keys})
        data = cfg.to_dict()
        val = 0.15 if self.validation_fraction is None else self.validation_fraction
        data["data"] = {"validation_fraction": val, "test_fraction": 0.0}
        if self.tracking is not None:
            data["tracking"] = dict(self.tracking)
        if not self.verbose:
            data["training"]["progress"] = False
        return parse_config(data, where=type(self).__name__)

    # -- fit / predict / score -------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> MultiTaskEstimator:
        """Train on features ``X`` (DataFrame or 2-D array) and targets ``y`` (DataFrame,
        mapping, Series or array; NaN marks a missing label). Returns ``self``."""
        features = self._features(X, reset=True).reset_index(drop=True)
        if len(features) < 3:
            raise PolytaskError(
                f"X has n_samples={len(features)}; training needs at least 3 rows (2 to train "
                "on, 1 to validate)"
            )
        targets = self._targets(y, len(features))
        clash = [c for c in targets.columns if c in features.columns]
        if clash:
            raise PolytaskError(
                f"column '{clash[0]}' is both a feature in X and a target in y; rename one"
            )
        specs = self._task_specs(targets)
        cfg = self._config(specs)
        data = pd.concat([features, targets], axis=1)
        self.model_: MultiTaskModel = train_run(cfg, data, verbose=self.verbose)
        self.task_names_ = list(self.model_.task_names)
        self.task_kinds_ = {t.name: t.kind for t in self.model_.tasks}
        self.classes_ = {
            t.name: np.asarray(labels, dtype=object)
            for t in self.model_.tasks
            if (labels := t.class_labels()) is not None
        }
        self.history_ = self.model_.history
        return self

    def predict(self, X: Any) -> pd.DataFrame:
        """A DataFrame with one column per task, in task order, holding each task's
        prediction in the label's own values or units, indexed like ``X`` (a DataFrame)
        or 0..n-1 (an array). ``.to_numpy()`` gives an array."""
        check_is_fitted(self, "model_")
        index = X.index if isinstance(X, pd.DataFrame) else None
        features = self._features(X, reset=False)
        full = self.model_.predict(features)
        out = full[self.task_names_].infer_objects()  # integer class labels as integers
        if index is not None:
            out.index = index
        return out

    @available_if(_has_classification_task)
    def predict_proba(self, X: Any) -> dict[str, np.ndarray]:
        """``{task: array (n_samples, n_classes)}`` for each classification task, columns
        in ``classes_[task]`` order: binary ``[P(negative), P(positive)]``, multiclass
        rows summing to 1, multilabel one independent probability per label."""
        check_is_fitted(self, "model_")
        features = self._features(X, reset=False)
        raw = self.model_.predict_raw(features)
        out: dict[str, np.ndarray] = {}
        for task, values in zip(self.model_.tasks, raw, strict=True):
            p = task.class_probabilities(values)
            if p is not None:
                out[task.name] = p
        return out

    def task_scores(self, X: Any, y: Any) -> dict[str, float]:
        """Each task's score as :meth:`score` averages them (``Task.sklearn_score``: its
        kind's ``score_metric``, negated where lower is better), over the rows where that
        task is labelled; NaN where it is undefined."""
        check_is_fitted(self, "model_")
        features = self._features(X, reset=False).reset_index(drop=True)
        targets = self._targets(y, len(features))
        labels = [c for t in self.model_.tasks for c in t.columns]
        missing = [c for c in labels if c not in targets.columns]
        if missing:
            raise PolytaskError(
                f"y lacks the label column '{missing[0]}' of a task; give every task's column"
            )
        frame = pd.concat([features.drop(columns=labels, errors="ignore"), targets], axis=1)
        metrics = self.model_.evaluate(frame)
        out: dict[str, float] = {}
        for task in self.model_.tasks:
            value = task.sklearn_score(metrics[task.name])
            out[task.name] = float("nan") if value is None else value
        return out

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """The mean over tasks of R² (regression, count), accuracy (binary, multiclass),
        micro-F1 (multilabel), mIoU (segmentation) and −MAE (dense regression), each over
        that task's labelled rows (a kind's ``score_metric``); tasks where the score is
        undefined (e.g. R² of one row) are left out, NaN if all are."""
        if sample_weight is not None:
            raise PolytaskError(f"{type(self).__name__}.score does not take sample_weight")
        values = [v for v in self.task_scores(X, y).values() if not math.isnan(v)]
        return float(np.mean(values)) if values else float("nan")
