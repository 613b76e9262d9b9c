"""Permutation importance: which features drove each task's predictions.

For each feature group (one input column, so a text or image column is one group; the
API takes other groupings) the group's values are shuffled across the rows, breaking
its link to the labels, and each task is scored again with its headline metric (the
first of ``Task.headline``). A group's importance for a task is the metric's drop, signed
so that a larger value means a worse score without the group (higher-is-better metrics:
before − after; lower-is-better: after − before), as the mean and standard deviation over
``repeats`` shuffles (Breiman 2001; Fisher et al. 2019). Each shuffle predicts every
task at once, so the cost is groups × repeats predictions of the rows.

``polytask explain RUN --data FILE`` saves the result into the run as
``importance.json`` (the report draws one small chart per task from it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polytask import run_dir
from polytask.errors import PolytaskError, close_matches
from polytask.features.io import check_frame, read_table
from polytask.features.splits import split_frame, split_frame_by_key
from polytask.model import MultiTaskModel

SPLITS = ("all", "train", "validation", "test")


def _frame(data: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return check_frame(data.copy(deep=False))
    return read_table(data)


def run_split(model: MultiTaskModel, df: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of ``df`` that training put in ``split``, drawn again as training drew
    them (the run's seed, fractions and split key): ``df`` must be the table it trained
    on. ``"all"``: every row."""
    if split not in SPLITS:
        raise PolytaskError(f"`split` '{split}' is not one of {', '.join(SPLITS)}")
    if split == "all":
        return df
    dc, seed = model.config.data, model.config.training.seed
    given = {"validation": dc.validation, "test": dc.test}.get(split)
    if given:
        raise PolytaskError(
            f"the run's {split} split is its own file '{given}'; pass that file as the data "
            "with `split` 'all'"
        )
    draw = split_frame if dc.split_key is None else _by_key(dc.split_key)
    parts = draw(
        df,
        validation_fraction=dc.validation_fraction,
        test_fraction=dc.test_fraction,
        seed=seed,
        draw_validation=dc.validation is None,
        draw_test=dc.test is None,
    )
    chosen = dict(zip(SPLITS[1:], parts, strict=True))[split]
    if chosen is None or not len(chosen):
        raise PolytaskError(f"the run's config draws no {split} split; choose another `split`")
    return chosen


def _by_key(key: str) -> Any:
    return lambda df, **kw: split_frame_by_key(df, key, **kw)


def feature_groups(
    model: MultiTaskModel, groups: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[str]]:
    """``groups`` checked against the model's input columns, or one group per column."""
    columns = list(model.preprocessor.columns)
    if groups is None:
        return {c: [c] for c in columns}
    out: dict[str, list[str]] = {}
    for name, cols in groups.items():
        for c in cols:
            if c not in columns:
                near = close_matches(c, columns)
                hint = f" (close: {', '.join(near)})" if near else ""
                raise PolytaskError(f"`groups` '{name}': '{c}' is not a feature{hint}")
        out[str(name)] = list(cols)
    return out


def _scorer(model: MultiTaskModel, df: pd.DataFrame) -> tuple[list[Any], Any]:
    """The tasks with labels in ``df`` and a function of raw outputs -> their metric."""
    present = [t for t in model.tasks if all(c in df.columns for c in t.columns)]
    if not present:
        raise PolytaskError(
            "no task's label column is in the data; permutation importance scores the "
            "tasks against their labels, so give labelled rows"
        )
    index = [model.tasks.index(t) for t in present]
    encoded = [t.encode(t.labels_of(df)) for t in present]
    arrays = [(y.numpy(), m.numpy().astype(bool)) for y, m in encoded]

    def scores(raw: list[np.ndarray]) -> list[float | None]:
        out = []
        for t, i, (y, m) in zip(present, index, arrays, strict=True):
            value = t.metrics(raw[i], y, m).get(next(iter(t.headline)))
            out.append(None if value is None else float(value))
        return out

    return present, scores


def permutation_importance(
    model: MultiTaskModel,
    data: pd.DataFrame | str | Path,
    repeats: int = 5,
    seed: int = 0,
    split: str = "all",
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Per task, each feature group's metric drop over ``repeats`` shuffles of the rows
    of ``data`` (of its ``split``, see :func:`run_split`); returns what ``importance.json``
    holds: ``{"tasks": {task: {"metric", "higher_is_better", "baseline", "groups":
    {group: {"mean", "std", "drops"}}}}, "rows", "repeats", "seed", "split", ...}``."""
    if repeats < 1:
        raise PolytaskError(f"`repeats` is {repeats}; give at least 1 (e.g. 5)")
    t0 = time.perf_counter()
    df = run_split(model, _frame(data), split).reset_index(drop=True)
    cols = feature_groups(model, groups)
    model.preprocessor.check_columns(df)
    present, scores = _scorer(model, df)
    base = scores(model.predict_raw(df))
    rng = np.random.default_rng(seed)
    drops: dict[str, np.ndarray] = {}
    for name, members in cols.items():
        values = np.full((repeats, len(present)), np.nan)
        for r in range(repeats):
            shuffled = df.copy(deep=False)
            order = rng.permutation(len(df))
            for c in members:
                shuffled[c] = df[c].to_numpy()[order]
            values[r] = [
                np.nan if b is None or a is None else _drop(t, b, a)
                for t, b, a in zip(present, base, scores(model.predict_raw(shuffled)), strict=True)
            ]
        drops[name] = values
    tasks = {
        t.name: _task_entry(t, base[k], {g: d[:, k] for g, d in drops.items()})
        for k, t in enumerate(present)
    }
    return {
        "tasks": tasks,
        "rows": len(df),
        "repeats": repeats,
        "seed": seed,
        "split": split,
        "data": str(data) if not isinstance(data, pd.DataFrame) else None,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _drop(task: Any, before: float, after: float) -> float:
    return before - after if next(iter(task.headline.values())) else after - before


def _task_entry(task: Any, baseline: float | None, drops: dict[str, np.ndarray]) -> dict:
    groups: dict[str, dict[str, Any]] = {
        g: {
            "mean": _finite(np.nanmean(d)) if np.isfinite(d).any() else None,
            "std": _finite(np.nanstd(d, ddof=1)) if np.isfinite(d).sum() > 1 else None,
            "drops": [_finite(v) for v in d],
        }
        for g, d in drops.items()
    }
    ranked = sorted(groups, key=lambda g: -(groups[g]["mean"] or 0.0))
    return {
        "metric": next(iter(task.headline)),
        "higher_is_better": next(iter(task.headline.values())),
        "baseline": baseline,
        "groups": {g: groups[g] for g in ranked},
    }


def _finite(value: Any) -> float | None:
    v = float(value)
    return v if np.isfinite(v) else None


def explain(
    run: str | Path,
    data: pd.DataFrame | str | Path,
    repeats: int = 5,
    seed: int = 0,
    split: str = "all",
    overwrite: bool = False,
) -> dict[str, Any]:
    """:func:`permutation_importance` of the saved run ``run``, saved into it as
    ``importance.json`` (an existing one is replaced only with ``overwrite``)."""
    folder = Path(run)
    run_dir.check_run(folder)
    target = folder / run_dir.IMPORTANCE
    if target.exists() and not overwrite:
        raise PolytaskError(f"'{target}' already exists; pass `overwrite=True` to replace it")
    result = permutation_importance(MultiTaskModel.load(folder), data, repeats, seed, split)
    try:
        run_dir.write_json(target, result)
    except OSError as err:
        raise run_dir.write_error(folder, err) from None
    return result
