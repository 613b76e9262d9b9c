"""The user-facing model: fitted preprocessing + tasks + network, with predict/evaluate/save."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from safetensors.torch import load_file, save_file

import polytask
from polytask import run_dir
from polytask.architectures import MultiTaskNet, architecture_class
from polytask.config import RunConfig, load_yaml, parse_config
from polytask.encoders import TabularEncoder
from polytask.errors import PolytaskError, close_matches
from polytask.evaluation.scoring import raw_outputs, score
from polytask.features.io import check_frame, read_table
from polytask.features.preprocess import Preprocessor
from polytask.tasks import Task, make_task


def build_tasks(cfg: RunConfig) -> list[Task]:
    return [make_task(t.name, t.kind, t.label_columns, t.options) for t in cfg.tasks]


def build_net(cfg: RunConfig, pre: Preprocessor, tasks: list[Task]) -> MultiTaskNet:
    m = cfg.model
    encoder = TabularEncoder(
        numeric_width=pre.numeric_width,
        cardinalities=[c.cardinality for c in pre.categorical],
        embedding_dims=[c.dim for c in pre.categorical],
        hidden=m.hidden,
        activation=m.activation,
        dropout=m.dropout,
        norm=m.norm,
    )
    cls = architecture_class(m.architecture)
    from polytask.config import validate_options

    options = validate_options(cls.Options, m.options, where=f"architecture '{m.architecture}'")
    return cls(encoder, tasks, m.head_hidden, m.activation, m.dropout, options=options)


def _as_frame(data: pd.DataFrame | str | Path, what: str = "data") -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return check_frame(data.copy(deep=False), what)
    return read_table(data)


class MultiTaskModel:
    """A trained multi-task model. Get one from :func:`polytask.fit` or :func:`polytask.load`."""

    def __init__(
        self,
        config: RunConfig,
        preprocessor: Preprocessor,
        tasks: list[Task],
        net: MultiTaskNet,
        metrics: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        info: dict[str, Any] | None = None,
    ):
        self.config = config
        self.preprocessor = preprocessor
        self.tasks = tasks
        self.net = net.eval()
        self.metrics: dict[str, Any] = metrics or {}
        self.history: list[dict[str, Any]] = history or []
        self.info: dict[str, Any] = info or {}

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def __repr__(self) -> str:
        tasks = ", ".join(t.describe() for t in self.tasks)
        return f"MultiTaskModel(tasks=[{tasks}], features={len(self.preprocessor.columns)})"

    # -- prediction ------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    def predict_raw(self, data: pd.DataFrame | str | Path) -> list[np.ndarray]:
        """Raw network outputs (logits, standardised values) per task, in task order."""
        df = _as_frame(data)
        feats = self.preprocessor.transform(df)
        outs = raw_outputs(self.net, feats, self.config.training.eval_batch_size, self._device())
        return [o.numpy() for o in outs]

    def predict(
        self, data: pd.DataFrame | str | Path, keep: list[str] | None = None
    ) -> pd.DataFrame:
        """One row per input row, in input order: each task's prediction in the label's own
        values or units, probabilities as ``TASK_proba`` / ``TASK_proba_CLASS``, and the
        input columns named in ``keep`` (as ``COL_input`` where a prediction column has
        the same name, e.g. when keeping a task's label)."""
        df = _as_frame(data)
        keep = list(keep or [])
        for col in keep:
            if col not in df.columns:
                near = close_matches(col, df.columns)
                hint = f" (close: {', '.join(near)})" if near else ""
                raise PolytaskError(f"--keep column '{col}' is not in the data{hint}")
        outs = self.predict_raw(df)
        predicted: dict[str, Any] = {}
        for task, out in zip(self.tasks, outs, strict=True):
            predicted.update(task.decode(out))
        # kept input columns come first; one named like a prediction column gets "_input"
        columns: dict[str, Any] = {
            (f"{c}_input" if c in predicted else c): df[c].to_numpy() for c in keep
        }
        columns.update(predicted)
        return pd.DataFrame(columns, index=pd.RangeIndex(len(df)))

    def evaluate(self, data: pd.DataFrame | str | Path) -> dict[str, dict[str, Any]]:
        """``{task: {metric: value, ..., "n": labelled_rows}}`` for every task whose label
        column(s) are in ``data``; undefined metrics are None."""
        df = _as_frame(data)
        present = [t for t in self.tasks if all(c in df.columns for c in t.columns)]
        if not present:
            return {}
        index = [self.tasks.index(t) for t in present]
        outs = self.predict_raw(df)
        targets, masks = [], []
        for t in present:
            y, m = t.encode(t.labels_of(df))
            targets.append(y)
            masks.append(m)
        return score(present, [torch.from_numpy(outs[i]) for i in index], targets, masks)

    # -- persistence -----------------------------------------------------------------------
    def _write(self, folder: Path) -> None:
        (folder / run_dir.CONFIG).write_text(
            yaml.safe_dump(self.config.to_dict(), sort_keys=False), encoding="utf-8"
        )
        run_dir.write_json(
            folder / run_dir.PREPROCESSING,
            {
                "features": self.preprocessor.to_dict(),
                "tasks": [
                    {"name": t.name, "kind": t.kind, "columns": t.columns, "state": t.state()}
                    for t in self.tasks
                ],
            },
        )
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / run_dir.WEIGHTS), metadata={"format": "polytask-run"})
        run_dir.write_json(folder / run_dir.METRICS, self.metrics)
        if not (folder / run_dir.HISTORY).exists():
            with (folder / run_dir.HISTORY).open("w", encoding="utf-8") as f:
                for record in self.history:
                    f.write(_json_line(record))
        info = dict(self.info)
        info.update(
            polytask_version=polytask.__version__,
            torch_version=torch.__version__,
            python_version=platform.python_version(),
        )
        run_dir.write_json(folder / run_dir.INFO, info)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the run directory atomically; an existing one needs ``overwrite=True``."""
        final = Path(path)
        run_dir.check_can_create(final, overwrite)
        with run_dir.staging_dir(final) as tmp:
            try:
                self._write(tmp)
            except OSError as err:
                raise run_dir._write_error(final, err) from None
            run_dir.publish(tmp, final, overwrite)
        return final

    @classmethod
    def load(cls, path: str | Path) -> MultiTaskModel:
        folder = Path(path)
        run_dir.check_run(folder)
        try:
            raw = load_yaml((folder / run_dir.CONFIG).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise PolytaskError(f"'{folder / run_dir.CONFIG}' cannot be read ({err})") from None
        cfg = parse_config(raw, where=str(folder / run_dir.CONFIG))
        prep = run_dir.read_json(folder / run_dir.PREPROCESSING)
        tasks = build_tasks(cfg)
        try:
            pre = Preprocessor.from_dict(prep["features"])
            states = {t["name"]: t["state"] for t in prep["tasks"]}
            for t in tasks:
                t.load_state(states[t.name])
        except (KeyError, TypeError, ValueError) as err:
            raise PolytaskError(
                f"'{folder / run_dir.PREPROCESSING}' is damaged ({type(err).__name__}: {err}); "
                "train the run again"
            ) from None
        net = build_net(cfg, pre, tasks)
        try:
            weights = load_file(str(folder / run_dir.WEIGHTS))
            net.load_state_dict(weights)
        except Exception as err:  # safetensors raises its own error types
            raise PolytaskError(
                f"'{folder / run_dir.WEIGHTS}' cannot be loaded ({err}); the run is damaged"
            ) from None
        metrics = (
            run_dir.read_json(folder / run_dir.METRICS)
            if (folder / run_dir.METRICS).is_file()
            else {}
        )
        info = run_dir.read_json(folder / run_dir.INFO) if (folder / run_dir.INFO).is_file() else {}
        history = []
        if (folder / run_dir.HISTORY).is_file():
            lines = (folder / run_dir.HISTORY).read_text(encoding="utf-8").splitlines()
            try:
                history = [json.loads(line) for line in lines if line.strip()]
            except ValueError:
                history = []  # the history is for reading; a damaged one is not fatal
        return cls(cfg, pre, tasks, net, metrics=metrics, history=history, info=info)


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record) + "\n"
