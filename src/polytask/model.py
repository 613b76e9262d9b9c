"""The user-facing model: fitted preprocessing + tasks + network, with predict/evaluate/save."""

from __future__ import annotations

import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from safetensors.torch import load_file, save_file

from polytask import io, run_dir
from polytask.architectures import MultiTaskNet
from polytask.architectures.base import load_weights
from polytask.config import RunConfig, load_yaml, parse_saved_config
from polytask.errors import PolytaskError, close_matches, did_you_mean
from polytask.features.io import check_frame, read_table
from polytask.features.preprocess import FeatureTensors, Preprocessor
from polytask.features.records import encode_columns, records_columns
from polytask.metrics.corrections import corrected
from polytask.metrics.scoring import raw_outputs, score

# the network's builders live in polytask.network; imported from here by scripts
from polytask.network import build_net as build_net
from polytask.network import build_tasks as build_tasks
from polytask.tasks import Task
from polytask.version import __version__

#: ``predict`` on at most this many rows takes the records path (numpy per column, no
#: pandas work per column; see polytask.features.records)
FAST_ROWS = 64


def _as_frame(data: pd.DataFrame | str | Path, what: str = "data") -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        if len(data) and data.columns.is_unique and all(type(c) is str for c in data.columns):
            return data  # nothing for check_frame to fix: no copy (a one-row predict's cost)
        return check_frame(data.copy(deep=False), what)
    return read_table(data)


class MultiTaskModel:
    """A trained multi-task model. Get one from :func:`polytask.fit` or :func:`polytask.load`."""

    def __init__(
        self,
        config: RunConfig,
        preprocessor: Preprocessor | list[Preprocessor],
        tasks: list[Task],
        net: MultiTaskNet,
        metrics: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        info: dict[str, Any] | None = None,
    ):
        self.config = config
        #: one per data source (a single one unless the config has ``sources``): a
        #: single table is the one-source case throughout
        self.preprocessors = preprocessor if isinstance(preprocessor, list) else [preprocessor]
        #: the source names of a multi-source model, else None
        self.sources = [s.name for s in config.sources] if config.sources else None
        self.tasks = tasks
        self.net = net.eval()
        self.metrics: dict[str, Any] = metrics or {}
        self.history: list[dict[str, Any]] = history or []
        self.info: dict[str, Any] = info or {}
        #: what was fitted after training (run_dir.CALIBRATION): {} for none
        self.calibration: dict[str, Any] = {}

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def preprocessor(self) -> Preprocessor:
        """The fitted feature preprocessing (of a single-source model)."""
        if self.sources is not None:
            raise PolytaskError(
                f"this model has several data sources ({', '.join(self.sources)}), each with "
                "its own features; this operation supports single-source models only"
            )
        return self.preprocessors[0]

    def __repr__(self) -> str:
        tasks = ", ".join(t.describe() for t in self.tasks)
        n = sum(len(p.columns) for p in self.preprocessors)
        return f"MultiTaskModel(tasks=[{tasks}], features={n})"

    # -- prediction ------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    def source_of(self, df: pd.DataFrame, source: str | None = None) -> int | None:
        """Which source's features ``df`` holds: the one named, else the only source whose
        feature columns are all in ``df``. None for a single-source model."""
        if self.sources is None:
            if source is not None:
                raise PolytaskError(f"source='{source}' given, but the model has one data source")
            return None
        if source is not None:
            if source not in self.sources:
                raise PolytaskError(
                    f"unknown source '{source}'{did_you_mean(source, self.sources)}; the "
                    f"model's sources are {', '.join(self.sources)}"
                )
            return self.sources.index(source)
        fits = [
            i for i, p in enumerate(self.preprocessors) if all(c in df.columns for c in p.columns)
        ]
        if len(fits) == 1:
            return fits[0]
        if not fits:
            raise PolytaskError(
                "the data holds the features of none of the model's sources ("
                + "; ".join(
                    f"{n}: {', '.join(p.columns[:4])}"
                    for n, p in zip(self.sources, self.preprocessors, strict=True)
                )
                + "); check the columns"
            )
        names = ", ".join(self.sources[i] for i in fits)
        raise PolytaskError(f"the data fits several sources ({names}); say which with source=")

    def source_tasks(self, source: int | None) -> list[Task]:
        """The tasks a source's rows are predicted and scored for (all, with one source)."""
        if source is None:
            return list(self.tasks)
        own = {t.name for t in self.config.sources[source].tasks}
        return [t for t in self.tasks if t.name in own]

    def predict_raw(
        self, data: pd.DataFrame | str | Path, source: str | None = None
    ) -> list[np.ndarray]:
        """Raw network outputs (logits, standardised values) per task, in task order."""
        df = _as_frame(data)
        return self._frame_raw(df, self.source_of(df, source))

    def _frame_raw(self, df: pd.DataFrame, s: int | None) -> list[np.ndarray]:
        """Raw outputs of a checked frame: a few rows of a single-source model take the
        records path (no pandas work per column), the rest ``Preprocessor.transform``."""
        pre = self.preprocessors[s or 0]
        if s is None and len(df) <= FAST_ROWS and not pre.images:
            pre.check_columns(df)
            where = [df.columns.get_loc(c) for c in pre.columns]
            cells = df.to_numpy(dtype=object)
            try:
                feats = encode_columns(
                    pre, {c: cells[:, j].tolist() for c, j in zip(pre.columns, where, strict=True)}
                )
            except PolytaskError:
                feats = pre.transform(df)  # the DataFrame path's own message
        else:
            feats = pre.transform(df)
        return self._raw(feats, s)

    def _raw(self, feats: FeatureTensors, s: int | None = None) -> list[np.ndarray]:
        lead = () if s is None else (torch.tensor(s, device=self._device()),)
        bs = self.config.training.eval_batch_size
        outs = raw_outputs(self.net, feats, bs, self._device(), lead)
        return [o.numpy() for o in outs]

    def corrections(self, calibrated: bool = True, coverage: float | None = None) -> Any:
        """A block whose predictions and scores use the fitted temperatures only with
        ``calibrated``, and intervals at ``coverage`` (None: each task's ``intervals``
        option): ``with model.corrections(coverage=0.8): model.predict(df)``."""
        return corrected(self.tasks, calibrated, coverage)

    def predict_columns(self, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """The prediction columns ``predict`` writes, for records given as mappings
        (feature -> raw value, None for missing), encoded with numpy without a
        DataFrame (the path ``serve`` takes): {column: values, one per record}."""
        pre = self.preprocessor
        feats = encode_columns(pre, records_columns(records, pre.columns))
        columns: dict[str, np.ndarray] = {}
        for task, out in zip(self.tasks, self._raw(feats), strict=True):
            columns.update(task.decode(out))
        return columns

    def predict_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One dict per record with the columns ``predict`` writes (``TASK``,
        ``TASK_proba``, ...): the Python API for a handful of records, without pandas.
        ``model.predict_records([{"age": 61, "sex": "f", ...}])[0]["TASK_proba"]``."""
        columns = self.predict_columns(records)
        values = [
            [v.item() if isinstance(v, np.generic) else v for v in c] for c in columns.values()
        ]
        return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]

    def predict(
        self,
        data: pd.DataFrame | str | Path,
        keep: list[str] | None = None,
        source: str | None = None,
    ) -> pd.DataFrame:
        """One row per input row, in input order and with the input's index (so a join on
        the index lines up): each task's prediction in the label's own values or units,
        probabilities as ``TASK_proba`` / ``TASK_proba_CLASS``, and the input columns named
        in ``keep`` (as ``COL_input`` where a prediction column has the same name, e.g.
        when keeping a task's label). A per-pixel task's column holds one H x W array per
        row (``np.stack(df[TASK])`` gives the N x H x W block). A multi-source model
        predicts the tasks of the source whose features ``data`` holds (or of ``source``)."""
        df = _as_frame(data)
        keep = list(keep or [])
        for col in keep:
            if col not in df.columns:
                near = close_matches(col, df.columns)
                hint = f" (close: {', '.join(near)})" if near else ""
                raise PolytaskError(f"`keep` column '{col}' is not in the data{hint}")
        s = self.source_of(df, source)
        outs = self._frame_raw(df, s)
        predicted: dict[str, Any] = {}
        own = self.source_tasks(s)
        for task, out in zip(self.tasks, outs, strict=True):
            if task not in own:
                continue
            for name, values in task.decode(out).items():
                # per-pixel predictions: one H x W array per row
                predicted[name] = list(values) if values.ndim > 1 else values
        # kept input columns come first; one named like a prediction column gets "_input"
        columns: dict[str, Any] = {
            (f"{c}_input" if c in predicted else c): df[c].to_numpy() for c in keep
        }
        columns.update(predicted)
        return pd.DataFrame(columns, index=df.index)

    def evaluate(
        self, data: pd.DataFrame | str | Path, source: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """``{task: {metric: value, ..., "n": labelled_rows}}`` for every task whose label
        column(s) are in ``data`` (of a multi-source model: every task of the data's
        source); undefined metrics are None."""
        df = _as_frame(data)
        s = self.source_of(df, source)
        own = self.source_tasks(s)
        present = [t for t in own if all(c in df.columns for c in t.columns)]
        absent = [t for t in own if t not in present]
        if absent:  # left out of the result, as documented, and said so
            missing = "; ".join(
                f"'{t.name}' (column {', '.join(repr(c) for c in t.columns if c not in df)})"
                for t in absent
            )
            warnings.warn(
                f"not scored, their label columns are not in the data: {missing}",
                UserWarning,
                stacklevel=2,
            )
        if not present:
            return {}
        index = [self.tasks.index(t) for t in present]
        outs = self.predict_raw(df, None if s is None else self.sources[s])  # type: ignore[index]
        targets, masks = [], []
        for t in present:
            y, m = t.encode(t.labels_of(df))
            targets.append(y)
            masks.append(m)
        return score(present, [torch.from_numpy(outs[i]) for i in index], targets, masks)

    # -- persistence -----------------------------------------------------------------------
    def _preprocessing(self, files: dict[str, str] | None = None) -> dict[str, Any]:
        """The run's preprocessing file: a single table's features at the top level (the
        layout runs have always had), else one entry per source; every task's state.
        ``files`` collects the documents that are files of their own (tokenizer.json)."""
        features: dict[str, Any] = (
            {"features": self.preprocessors[0].to_dict(files)}
            if self.sources is None
            else {
                "sources": [
                    {"name": n, "features": p.to_dict(files)}
                    for n, p in zip(self.sources, self.preprocessors, strict=True)
                ]
            }
        )
        tasks = [
            {"name": t.name, "kind": t.kind, "columns": t.columns, "state": t.state()}
            for t in self.tasks
        ]
        return {**features, "tasks": tasks}

    def _write(self, folder: Path) -> None:
        config = yaml.safe_dump(self.config.to_dict(), sort_keys=False)
        io.write_text(folder / run_dir.CONFIG, config)
        files: dict[str, str] = {}
        run_dir.write_json(folder / run_dir.PREPROCESSING, self._preprocessing(files))
        for name, text in files.items():
            io.write_text(folder / name, text)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / run_dir.WEIGHTS), metadata={"format": "polytask-run"})
        run_dir.write_json(folder / run_dir.METRICS, self.metrics)
        if self.calibration:
            run_dir.write_json(folder / run_dir.CALIBRATION, self.calibration)
        if not (folder / run_dir.HISTORY).exists():
            io.write_jsonl(folder / run_dir.HISTORY, self.history)
        info = dict(self.info)
        info.update(
            polytask_version=__version__,
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
                raise run_dir.write_error(final, err) from None
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
        cfg = parse_saved_config(raw, where=str(folder / run_dir.CONFIG))
        prep = run_dir.read_json(folder / run_dir.PREPROCESSING)
        tasks = build_tasks(cfg)
        try:
            # a single table's features sit at the top level (prep may not even be a dict)
            sources = prep["sources"] if "sources" in prep else [prep]  # noqa: SIM401
            files = {p.name: p.read_text("utf-8") for p in folder.glob(run_dir.SIDE_FILES)}
            pres = [Preprocessor.from_dict(src["features"], files) for src in sources]
            states = {t["name"]: t["state"] for t in prep["tasks"]}
            for t in tasks:
                t.load_state(states[t.name])
        except (KeyError, TypeError, ValueError) as err:
            raise PolytaskError(
                f"'{folder / run_dir.PREPROCESSING}' is damaged ({type(err).__name__}: {err}); "
                "train the run again"
            ) from None
        net = build_net(cfg, pres, tasks)
        try:
            weights = load_file(str(folder / run_dir.WEIGHTS))
            load_weights(net, weights)
        except Exception as err:  # safetensors raises its own error types
            raise PolytaskError(
                f"'{folder / run_dir.WEIGHTS}' cannot be loaded ({err}); the run is damaged"
            ) from None
        metrics = run_dir.read_optional(folder / run_dir.METRICS)
        info = run_dir.read_optional(folder / run_dir.INFO)
        history = run_dir.read_history(folder)
        model = cls(cfg, pres, tasks, net, metrics=metrics, history=history, info=info)
        model.calibration = run_dir.read_optional(folder / run_dir.CALIBRATION)
        return model
