"""Run directories: written atomically, never overwritten unless asked, no pickle inside.

Layout::

    RUN/
      config.yaml          the resolved configuration
      preprocessing.json   fitted feature preprocessing and task encodings (plain JSON)
      model.safetensors    the network's weights
      tokenizer.json       a pretrained text model's tokenizer (Hugging Face tokenizers)
      metrics.json         {split: {task: {metric: value, "n": rows}}}
      history.jsonl        one JSON object per epoch
      run.json             versions, timings, row counts, feature types
      calibration.json     what was fitted on validation after training (temperatures,
                           conformal intervals) and its evidence on test (the report's)
      importance.json      permutation importance (written by polytask explain)

A run is trained in ``RUN.partial/`` beside it (config.yaml and partial.json from the
start, the history as it grows, and ``checkpoint/``) and renamed to ``RUN`` only once it
is complete, so an interrupted run never looks finished: ``load`` refuses ``RUN.partial``
and ``polytask train --resume RUN`` continues it from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from polytask import io
from polytask.errors import PolytaskError
from polytask.io import write_json

CONFIG = "config.yaml"
PREPROCESSING = "preprocessing.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
HISTORY = "history.jsonl"
INFO = "run.json"
#: balancing: auto: the race of methods that chose the run's (polytask.auto)
RACE = "race.json"
CALIBRATION = "calibration.json"
IMPORTANCE = "importance.json"
REQUIRED = (CONFIG, PREPROCESSING, WEIGHTS)
#: documents of the preprocessing that are files of their own (named in preprocessing.json)
SIDE_FILES = "tokenizer*.json"
#: an unfinished run lives in RUN + this suffix
PARTIAL_SUFFIX = ".partial"
#: in RUN.partial: what the run needs to be resumed (and the mark of a polytask run)
PARTIAL_INFO = "partial.json"
#: in RUN.partial: the training checkpoint folder
CHECKPOINT = "checkpoint"
_LOCK = ".lock"


def check_can_create(path: Path, overwrite: bool) -> None:
    """Fail before any work if ``path`` exists (without overwrite) or can't be written."""
    if path.exists() and not overwrite:
        raise PolytaskError(
            f"run directory '{path}' already exists; choose another `out` or pass `overwrite=True`"
        )
    if path.exists() and not path.is_dir():
        raise PolytaskError(f"'{path}' exists and is not a directory; choose another `out`")
    _check_replaceable(path)
    with staging_dir(path) as tmp:
        probe = tmp / ".probe"
        try:
            probe.write_text("ok", encoding="utf-8")
        except OSError as err:
            raise write_error(path, err) from None


def _check_replaceable(path: Path) -> None:
    """--overwrite replaces a polytask run (or an empty folder), never other files."""
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not all((path / f).is_file() for f in REQUIRED):
        raise PolytaskError(
            f"'{path}' is not a polytask run, so `overwrite=True` will not replace it (it would "
            "delete its files); choose another `out`"
        )


def write_error(path: Path, err: OSError) -> PolytaskError:
    """The error for a run directory that can't be written (used wherever one is)."""
    reason = err.strerror or type(err).__name__
    return PolytaskError(f"cannot write to '{path}' ({reason}); choose a writable `out`")


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` (same file system), removed afterwards."""
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=parent))
    except OSError as err:
        raise write_error(final, err) from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move a fully written ``tmp`` folder to ``final`` with the modes a folder made with
    mkdir would have (so other users can read a saved run); an old run is replaced only
    with ``overwrite``, and only after the new one is complete."""
    try:
        if final.exists():
            if not overwrite:
                raise PolytaskError(
                    f"run directory '{final}' already exists; choose another `out` or pass "
                    "`overwrite=True`"
                )
            _check_replaceable(final)
        io.swap_folder(tmp, final)
    except OSError as err:
        raise write_error(final, err) from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PolytaskError(f"'{path}' cannot be read ({err}); the run is damaged") from None


def read_optional(path: Path) -> Any:
    """A run's JSON file that may be absent ({} then)."""
    return read_json(path) if path.is_file() else {}


def read_history(folder: Path) -> list[dict[str, Any]]:
    """A run's per-epoch records (empty when it has none); the history is for reading, so
    a damaged line is skipped rather than fatal."""
    return io.read_jsonl(folder / HISTORY)


def check_run(path: Path) -> None:
    if is_partial(path):
        raise PolytaskError(
            f"'{path}' is an unfinished run; continue it with polytask train --resume "
            f"{run_of_partial(path)}"
        )
    if not path.is_dir() and is_partial(partial_path(path)):
        raise PolytaskError(
            f"run '{path}' did not finish (its checkpoint is in '{partial_path(path)}'); "
            f"continue it with polytask train --resume {path}"
        )
    if not path.is_dir():
        raise PolytaskError(f"run directory '{path}' does not exist; pass the `out` of a train run")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise PolytaskError(
            f"'{path}' is not a complete polytask run (missing {', '.join(missing)}); "
            "pass the `out` folder of a finished train run"
        )


# -- unfinished runs: RUN.partial -----------------------------------------------------------


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


def run_of_partial(path: Path) -> Path:
    """RUN for RUN.partial (and RUN for RUN)."""
    if path.name.endswith(PARTIAL_SUFFIX) and len(path.name) > len(PARTIAL_SUFFIX):
        return path.with_name(path.name[: -len(PARTIAL_SUFFIX)])
    return path


def is_partial(path: Path) -> bool:
    return (path / PARTIAL_INFO).is_file()


def has_checkpoint(partial: Path) -> bool:
    return (partial / CHECKPOINT / "checkpoint.json").is_file()


def check_no_partial(final: Path, overwrite: bool) -> None:
    """Before a new run: an unfinished run of the same RUN_DIR is resumed, not silently
    replaced (with ``overwrite`` it is removed)."""
    partial = partial_path(final)
    if not partial.exists():
        return
    if not is_partial(partial):
        raise PolytaskError(
            f"'{partial}' exists and is not an unfinished polytask run (a run is trained "
            f"in RUN_DIR{PARTIAL_SUFFIX}); move it away or choose another `out`"
        )
    if not overwrite:
        raise PolytaskError(
            f"an unfinished run of '{final}' is in '{partial}'; continue it with polytask "
            f"train --resume {final}, or pass `overwrite=True` to start over"
        )
    with _locked(partial):
        shutil.rmtree(partial)


def find_partial(final: Path) -> Path:
    """The unfinished run to resume for RUN_DIR (clear errors when there is none)."""
    partial = partial_path(final)
    if is_partial(partial):
        return partial
    if final.is_dir() and all((final / f).is_file() for f in REQUIRED):
        raise PolytaskError(
            f"run '{final}' already finished, there is nothing to resume; train a new run "
            "with `out` (or the same `out` with `overwrite=True` to replace it)"
        )
    raise PolytaskError(
        f"there is no unfinished run of '{final}' to resume (no '{partial}'); start one "
        f"with polytask train --out {final}"
    )


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (released when the process ends, even by
    SIGKILL), so two processes never train the same run."""
    try:
        import fcntl
    except ImportError:  # no file locks (Windows): no guard
        yield
        return
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise write_error(folder, err) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PolytaskError(
                f"'{folder}' is being trained by another process; wait for it to end or "
                "stop it first"
            ) from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def partial_dir(final: Path, info: dict[str, Any] | None) -> Iterator[Path]:
    """The folder RUN.partial a run trains in, locked while in use: created with
    ``info`` (a new run), or an existing one (``info=None``, resuming). If the block fails
    before the first checkpoint, the folder is removed (there is nothing to resume);
    with a checkpoint it stays for ``--resume``."""
    partial = partial_path(final)
    if info is not None:
        try:
            partial.mkdir(parents=True)
            write_json(partial / PARTIAL_INFO, info)
        except FileExistsError:
            check_no_partial(final, overwrite=False)  # raises: resume it or --overwrite
            raise
        except OSError as err:
            raise write_error(final, err) from None
    with _locked(partial):
        try:
            yield partial
        except BaseException:
            if partial.is_dir() and not has_checkpoint(partial):
                shutil.rmtree(partial, ignore_errors=True)
            raise


def publish_partial(partial: Path, final: Path, overwrite: bool) -> None:
    """Move a finished RUN.partial to RUN (atomically, see :func:`publish`) and drop what
    only resuming needed (the checkpoint, partial.json)."""
    publish(partial, final, overwrite)
    shutil.rmtree(final / CHECKPOINT, ignore_errors=True)
    for name in (PARTIAL_INFO, _LOCK):
        (final / name).unlink(missing_ok=True)
