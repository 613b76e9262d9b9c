"""Experiment tracking as training callbacks: TensorBoard event files and MLflow runs.

Both are optional extras (``pip install 'polytask[tracking]'``) and imported only when a
run asks for them. Each epoch logs every number of its history record (``train/loss/TASK``,
``validation/loss/TASK``, ``validation/metrics/TASK/METRIC``, ``weights/TASK``,
``cosine/A~B``, ``lr``, ``monitor``, ``seconds``) at step = epoch; the run's config is
logged once at the start and the final metrics of each split (``final/SPLIT/TASK/METRIC``)
at the end. Only the main process logs when training runs in several processes.

``train_run`` builds the trackers a config's ``tracking`` section asks for with
:func:`session`; to use one with a :class:`~polytask.training.Trainer` yourself, pass it
as a callback and call :meth:`Tracker.close` when done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polytask.config import flatten
from polytask.errors import PolytaskError
from polytask.training.callbacks import Callback
from polytask.training.distributed import is_group_rank_zero

if TYPE_CHECKING:
    from polytask.config import RunConfig, TrackingConfig
    from polytask.training.trainer import Trainer, TrainResult

INSTALL = "pip install 'polytask[tracking]'"
#: record keys that are not logged as numbers (the epoch is the step)
_SKIP = frozenset({"epoch", "best"})


# -- what gets logged ----------------------------------------------------------------------------


def epoch_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """Every finite number of an epoch's history record, keyed by its path joined with
    '/' (labelled-row counts ``n`` under metrics and the booleans are left out)."""
    out: dict[str, float] = {}

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                key = str(key)
                if not path and key in _SKIP:
                    continue
                if key == "n" and "metrics" in path and not isinstance(item, Mapping):
                    continue
                walk(item, (*path, key))
        elif (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ):
            out["/".join(path)] = float(value)

    walk(record, ())
    return out


def final_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``{split: {task: {metric: value}}}`` -> ``{"final/SPLIT/TASK/METRIC": value}``."""
    out: dict[str, float] = {}
    for split, tasks in metrics.items():
        for task, values in tasks.items():
            for metric, value in values.items():
                if metric == "n" or value is None or isinstance(value, bool):
                    continue
                if math.isfinite(float(value)):
                    out[f"final/{split}/{task}/{metric}"] = float(value)
    return out


def flatten_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Nested config -> ``{"training.lr": "0.002", "tasks.0.kind": "binary", ...}`` (see
    :func:`polytask.config.flatten`) as MLflow parameters: strings, a list of plain values
    as one JSON value, None left out."""
    return {
        key: json.dumps(value, ensure_ascii=False) if isinstance(value, list) else str(value)
        for key, value in flatten(config).items()
        if value is not None
    }


def mlflow_key(name: str) -> str:
    """A metric or parameter name MLflow accepts: letters, digits, ``_ - . /`` and spaces
    (``~`` of a task pair becomes ``-``, others ``_``), no empty, ``.`` or ``..``
    segments, at most 250 characters."""
    parts = []
    for part in name.replace("~", "-").split("/"):
        part = re.sub(r"[^\w.\- ]", "_", part)
        parts.append("_" if part in ("", ".", "..") else part)
    return "/".join(parts)[:250]


# -- the callbacks -------------------------------------------------------------------------------


class Tracker(Callback):
    """Logs a run to one tracking backend. Subclasses implement ``_open``, ``_params``,
    ``_scalars`` and ``_close``."""

    def __init__(self, config: Mapping[str, Any] | None = None):
        #: the run's full config (logged as parameters at the start)
        self.config = dict(config or {})
        self.active = False
        self.closed = False

    # hooks
    def on_train_begin(self, trainer: Trainer) -> None:
        if self.active or self.closed or not is_group_rank_zero():
            return
        self._open()
        self.active = True
        config = self.config or {"training": trainer.cfg.model_dump(mode="json")}
        self._params(config)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.active:
            self._scalars(epoch_scalars(record), int(record["epoch"]))

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self.active:
            summary = {"best_epoch": float(result.best_epoch), "epochs_run": result.epochs_run}
            self._scalars({f"summary/{k}": float(v) for k, v in summary.items()}, 0)

    # after training
    def log_final(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Log ``{split: {task: {metric: value}}}`` (e.g. the test metrics) once."""
        if self.active:
            self._scalars(final_scalars(metrics), step)

    def close(self, status: str = "FINISHED") -> None:
        """Flush and end the run (``status`` FINISHED, FAILED or KILLED; MLflow records it)."""
        if self.active and not self.closed:
            self._close(status)
        self.active = False
        self.closed = True

    # backend
    def _open(self) -> None:
        raise NotImplementedError

    def _params(self, config: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _scalars(self, values: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def _close(self, status: str) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """Scalars to TensorBoard event files in ``log_dir`` (use one folder per run and
    point ``tensorboard --logdir`` at their parent); the config as a text summary."""

    def __init__(self, log_dir: str | Path, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        self.log_dir = Path(log_dir)
        self.writer: Any = None
        _import_tensorboard()

    def _open(self) -> None:
        summary_writer = _import_tensorboard()
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise PolytaskError(
                f"tracking.tensorboard '{self.log_dir}' is a file, not a folder; "
                "choose a folder for the event files"
            )
        try:
            self.writer = summary_writer(log_dir=str(self.log_dir))
        except OSError as err:
            raise PolytaskError(
                f"cannot write TensorBoard events to '{self.log_dir}' "
                f"({err.strerror or err}); choose a writable tracking.tensorboard folder"
            ) from None

    def _params(self, config: Mapping[str, Any]) -> None:
        import yaml

        text = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
        self.writer.add_text("config", "```yaml\n" + text + "```", 0)

    def _scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def _close(self, status: str) -> None:
        self.writer.close()


class MlflowTracker(Tracker):
    """One MLflow run in ``experiment`` on the store at ``uri``: a SQLite file
    (``sqlite:///mlflow.db``) or a folder (``file:./mlruns``). Parameters are the
    flattened config; keys are made MLflow-safe with :func:`mlflow_key`."""

    def __init__(
        self,
        uri: str,
        experiment: str = "polytask",
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ):
        super().__init__(config)
        self.uri = uri
        self.experiment = experiment
        self.run_name = run_name
        self.client: Any = None
        #: the MLflow run id (set when training starts)
        self.run_id: str | None = None
        _import_mlflow()

    def _open(self) -> None:
        _import_mlflow()
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        if _is_file_store(self.uri):
            # MLflow 3 refuses folder stores unless this is set; the user asked for one
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            with _quiet_loggers("mlflow", "alembic"):
                self.client = MlflowClient(tracking_uri=self.uri)
                found = self.client.get_experiment_by_name(self.experiment)
                experiment_id = (
                    found.experiment_id if found else self.client.create_experiment(self.experiment)
                )
                from polytask.version import __version__

                run = self.client.create_run(
                    experiment_id,
                    run_name=self.run_name,
                    tags={"polytask.version": __version__},
                )
        except (MlflowException, OSError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise PolytaskError(
                f"MLflow store '{self.uri}' cannot be used ({first}); check tracking.mlflow.uri "
                "(e.g. sqlite:///mlflow.db or file:./mlruns)"
            ) from None
        self.run_id = run.info.run_id

    def _params(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(mlflow_key(k), v[:6000]) for k, v in flatten_config(config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def _scalars(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(k), v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def _close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


# -- building trackers from a config ---------------------------------------------------------


def _missing(package: str, what: str) -> PolytaskError:
    return PolytaskError(f"{what} needs the {package} package; install it with {INSTALL}")


def _import_tensorboard() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise _missing("tensorboard", "tracking.tensorboard") from None
    return SummaryWriter


def _import_mlflow() -> None:
    try:
        import mlflow.tracking  # noqa: F401
    except ImportError:
        raise _missing("mlflow-skinny", "tracking.mlflow") from None


def _is_file_store(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """MLflow and alembic log INFO lines when they create a store; keep stderr clean."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def trackers(tracking: TrackingConfig, config: Mapping[str, Any] | None = None) -> list[Tracker]:
    """The trackers ``tracking`` asks for (none when both are off). A missing package
    is a :class:`PolytaskError` naming ``pip install 'polytask[tracking]'``."""
    out: list[Tracker] = []
    if tracking.tensorboard:
        out.append(TensorBoardTracker(tracking.tensorboard, config))
    if tracking.mlflow is not None:
        m = tracking.mlflow
        out.append(MlflowTracker(m.uri, m.experiment, m.run_name, config))
    return out


@contextlib.contextmanager
def session(cfg: RunConfig, callbacks: Sequence[Callback] = ()) -> Iterator[list[Callback]]:
    """``callbacks`` plus the config's trackers; on leaving, each tracker's run is ended
    as FINISHED, or FAILED / KILLED when training raised or was interrupted."""
    started = trackers(cfg.tracking, cfg.to_dict())
    status = "FAILED"
    try:
        yield [*callbacks, *started]
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        for tracker in started:
            with contextlib.suppress(Exception):  # never hide the error that ended training
                tracker.close(status)


def log_final(callbacks: Sequence[Callback], metrics: Mapping[str, Any], step: int = 0) -> None:
    """Give the final metrics of each split to the trackers among ``callbacks``."""
    for cb in callbacks:
        if isinstance(cb, Tracker):
            cb.log_final(metrics, step)


def check_available(tracking: TrackingConfig) -> None:
    """Fail before any work when a package the config's tracking needs is missing."""
    if tracking.tensorboard:
        _import_tensorboard()
    if tracking.mlflow is not None:
        _import_mlflow()
