"""Where a run trains, and how an interrupted one resumes.

A run with a run directory RUN trains in ``RUN.partial/`` (see :mod:`polytask.run_dir`):
``config.yaml`` and ``partial.json`` are written when training starts, the history as it
grows, and checkpoints in ``checkpoint/`` (see :mod:`polytask.training.checkpoint`).
When the run is complete the folder is renamed to RUN. Resuming reads the saved config,
checks that the config and the training data are those the checkpoint was written with
(by hash), and hands the checkpoint's state to the trainer.

With several processes only process 0 touches the file system; the checkpoint to resume
from is sent to the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from polytask import run_dir
from polytask.config import RunConfig, flatten, table_defaults
from polytask.errors import PolytaskError
from polytask.training import checkpoint
from polytask.training.checkpoint import Checkpointer
from polytask.training.distributed import DistContext
from polytask.training.interrupt import TrainingInterrupted
from polytask.version import __version__

FORMAT = "polytask-partial-run"


def config_hash(cfg: RunConfig) -> str:
    """sha256 of the resolved config (``training.progress`` aside: it only draws)."""
    data = cfg.to_dict()
    data.get("training", {}).pop("progress", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _holds_arrays(values: pd.Series) -> bool:
    return values.dtype == object and any(isinstance(v, np.ndarray) for v in values.head(8))


def data_fingerprint(*frames: pd.DataFrame | None) -> str:
    """sha256 over the rows, column names and dtypes of the frames training reads."""
    h = hashlib.sha256()
    for frame in frames:
        if frame is None:
            h.update(b"none")
            continue
        h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
        arrays = [c for c in frame.columns if _holds_arrays(frame[c])]
        plain = frame.drop(columns=arrays)
        if len(plain.columns):
            h.update(pd.util.hash_pandas_object(plain, index=False).to_numpy().tobytes())
        for c in arrays:  # images or masks in memory: hash their bytes
            for v in frame[c]:
                data = np.ascontiguousarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v)
                h.update(data if isinstance(data, bytes) else data.encode())
    return h.hexdigest()


def saved_config(final: Path) -> tuple[RunConfig, dict[str, Any]]:
    """An unfinished run's config and partial.json (clear errors if there is none)."""
    from polytask.config import load_yaml, parse_saved_config

    partial = run_dir.find_partial(final)
    path = partial / run_dir.CONFIG
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise PolytaskError(f"'{path}' cannot be read ({err}); start the run again") from None
    cfg = parse_saved_config(raw, where=str(path))
    return cfg, run_dir.read_json(partial / run_dir.PARTIAL_INFO)


#: keys a resumed run may change: they do not change what is trained
RESUMABLE_KEYS = frozenset({"training.progress", "training.report", "training.affinity_every"})
#: keys a saved run states as chosen from its table: ``auto`` given again is no change
_CHOSEN_KEYS = frozenset(f"training.{k}" for k in table_defaults.AUTO_KEYS)


def config_conflicts(saved: RunConfig, given: RunConfig) -> list[str]:
    """Keys where ``given`` differs from ``saved`` (a list flag repeated with the values
    already saved, e.g. the same --drop again, or a key left ``auto`` that the saved run
    chose from its table, is no conflict)."""
    a, b = flatten(saved.to_dict()), flatten(given.to_dict())
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(y, list) and all(isinstance(v, str) for v in y):
            y = list(dict.fromkeys(y))
        chosen = y == table_defaults.AUTO and key in _CHOSEN_KEYS
        if x != y and key not in RESUMABLE_KEYS and not chosen:  # "auto": as it was chosen
            out.append(f"'{key}' is {x!r} in the saved run but {y!r} here")
    return out


class Staging:
    """The run folder side of one ``train_run``: checks before any work, RUN.partial while
    training, checkpoints, the checkpoint to resume from, publishing at the end."""

    def __init__(
        self,
        out: Path | None,
        overwrite: bool,
        resume: bool,
        ctx: DistContext | None = None,
    ):
        self.out = out
        self.overwrite = overwrite
        self.resume = resume
        self.ctx = ctx
        self.main = ctx is None or ctx.is_main
        self.checkpointer: Checkpointer | None = None
        #: the state of the checkpoint to continue from (None: start from the beginning)
        self.resume_state: dict[str, Any] | None = None
        if out is None:
            if resume:
                raise PolytaskError("resuming needs the run directory of the unfinished run")
            return
        self._on_main(self._check)

    def _on_main(self, fn: Any) -> Any:
        return fn() if self.ctx is None else self.ctx.run_on_main(fn)

    def _check(self) -> None:
        assert self.out is not None
        if self.resume:
            run_dir.find_partial(self.out)
            if self.out.exists() and not self.overwrite:
                run_dir.check_can_create(self.out, self.overwrite)  # raises: exists
        else:
            run_dir.check_can_create(self.out, self.overwrite)
            run_dir.check_no_partial(self.out, self.overwrite)

    @contextlib.contextmanager
    def session(self, cfg: RunConfig, fingerprint: str | None) -> Iterator[Path | None]:
        """Inside: the folder to write the run in (None without a run directory, and on
        processes other than 0); ``checkpointer`` and ``resume_state`` are set."""
        if self.out is None:
            yield None
            return
        info = {"config_hash": config_hash(cfg), "data_fingerprint": fingerprint}
        t = cfg.training
        with self._folder(cfg, info) as folder:
            self.checkpointer = Checkpointer(
                None if folder is None else folder / run_dir.CHECKPOINT,
                t.checkpoint_every,
                t.checkpoint_seconds,
                info,
            )
            if self.resume:
                self.resume_state = self._load(info)
            try:
                yield folder
            except TrainingInterrupted as err:  # say how to go on
                raise TrainingInterrupted(
                    f"{err}; continue with: polytask train --resume {self.out}", err.signum
                ) from None

    @contextlib.contextmanager
    def _folder(self, cfg: RunConfig, info: dict[str, Any]) -> Iterator[Path | None]:
        """RUN.partial on process 0 (created, or reopened to resume), None elsewhere."""
        assert self.out is not None
        marker = None
        if not self.resume:
            marker = {
                "format": FORMAT,
                "run": self.out.name,
                "overwrite": self.overwrite,
                "cwd": os.getcwd(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "polytask_version": __version__,
                **info,
            }
        with contextlib.ExitStack() as stack:

            def open_folder() -> Path:
                assert self.out is not None
                folder = stack.enter_context(run_dir.partial_dir(self.out, marker))
                if marker is not None:
                    (folder / run_dir.CONFIG).write_text(
                        yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8"
                    )
                return folder

            yield self._on_main(open_folder)

    def _load(self, info: dict[str, Any]) -> dict[str, Any] | None:
        """Process 0 reads and checks the checkpoint; every process gets its state (None:
        the run was stopped before its first checkpoint and starts from the beginning)."""

        def read() -> dict[str, Any] | None:
            assert self.checkpointer is not None
            state = self.checkpointer.load()
            if state is None:
                return None
            saved = state.get("info", {})
            partial = run_dir.partial_path(self.out)  # type: ignore[arg-type]
            if saved.get("config_hash") != info["config_hash"]:
                raise PolytaskError(
                    f"the config in '{partial}' changed since its last checkpoint; restore "
                    "it, or start over with `overwrite=True`"
                )
            if saved.get("data_fingerprint") != info["data_fingerprint"]:
                raise PolytaskError(
                    f"the training data of run '{self.out}' changed since it started (its "
                    "rows differ); resume with the same data, or start over with `overwrite=True`"
                )
            return state

        if self.ctx is None:
            return read()

        def read_bytes() -> bytes:
            state = read()
            return b"" if state is None else checkpoint.to_bytes(state)

        blob = self.ctx.broadcast_bytes(self.ctx.run_on_main(read_bytes))
        return checkpoint.from_bytes(blob) if blob else None

    def publish(self, folder: Path | None) -> None:
        if folder is not None and self.out is not None:
            run_dir.publish_partial(folder, self.out, self.overwrite)
