"""Run directories: written atomically, never overwritten unless asked, no pickle inside.

Layout::

    RUN/
      config.yaml          the resolved configuration
      preprocessing.json   fitted feature preprocessing and task encodings (plain JSON)
      model.safetensors    the network's weights
      metrics.json         {split: {task: {metric: value, "n": rows}}}
      history.jsonl        one JSON object per epoch
      run.json             versions, timings, row counts, feature types
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

from polytask.errors import PolytaskError

CONFIG = "config.yaml"
PREPROCESSING = "preprocessing.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
HISTORY = "history.jsonl"
INFO = "run.json"
REQUIRED = (CONFIG, PREPROCESSING, WEIGHTS)


def check_can_create(path: Path, overwrite: bool) -> None:
    """Fail before any work if ``path`` exists (without overwrite) or can't be written."""
    if path.exists() and not overwrite:
        raise PolytaskError(
            f"run directory '{path}' already exists; choose another --out or pass --overwrite"
        )
    if path.exists() and not path.is_dir():
        raise PolytaskError(f"'{path}' exists and is not a directory; choose another --out")
    _check_replaceable(path)
    with staging_dir(path) as tmp:
        probe = tmp / ".probe"
        try:
            probe.write_text("ok", encoding="utf-8")
        except OSError as err:
            raise _write_error(path, err) from None


def _check_replaceable(path: Path) -> None:
    """--overwrite replaces a polytask run (or an empty folder), never other files."""
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not all((path / f).is_file() for f in REQUIRED):
        raise PolytaskError(
            f"'{path}' is not a polytask run, so --overwrite will not replace it (it would "
            "delete its files); choose another --out"
        )


def _write_error(path: Path, err: OSError) -> PolytaskError:
    reason = err.strerror or type(err).__name__
    return PolytaskError(f"cannot write to '{path}' ({reason}); choose a writable --out")


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` (same file system), removed afterwards."""
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=parent))
    except OSError as err:
        raise _write_error(final, err) from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _apply_umask(folder: Path) -> None:
    """mkdtemp makes 0700 folders (and some writers 0600 files): give the run the modes a
    folder made with mkdir would have, so other users can read a saved run."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for f in folder.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~mask)


def publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move a fully written ``tmp`` folder to ``final``; an old run is replaced only with
    ``overwrite``, and only after the new one is complete."""
    try:
        _apply_umask(tmp)
        if final.exists():
            if not overwrite:
                raise PolytaskError(
                    f"run directory '{final}' already exists; choose another --out or pass "
                    "--overwrite"
                )
            _check_replaceable(final)
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / final.name)
            try:
                os.replace(tmp, final)
            except OSError:
                os.replace(old / final.name, final)  # put the old run back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as err:
        raise _write_error(final, err) from None


def write_json(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, allow_nan=False, default=_json_default)
        f.write("\n")


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PolytaskError(f"'{path}' cannot be read ({err}); the run is damaged") from None


def check_run(path: Path) -> None:
    if not path.is_dir():
        raise PolytaskError(f"run directory '{path}' does not exist; pass the --out of a train run")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise PolytaskError(
            f"'{path}' is not a complete polytask run (missing {', '.join(missing)}); "
            "pass the --out folder of a finished train run"
        )
