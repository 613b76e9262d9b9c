"""Files written atomically with the usual permissions, folders swapped in whole, JSON lines.

Why one module: a reader (a colleague, a service, ``polytask load``) must never see half a
file, and a file written for the user must be readable as if ``open()`` had made it. A
temporary file from :func:`tempfile.mkstemp` is 0600 and a :func:`tempfile.mkdtemp`
folder 0700, and those modes survive the rename; so everything here renames only after
giving the temporary the mode ``open()``/``mkdir()`` would (0o666 / 0o777 less the umask).

The bottom layer: it imports nothing from polytask.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode ``Path.mkdir()`` gives a new folder."""
    return 0o777 & ~umask()


def apply_usual_modes(folder: Path) -> None:
    """Give ``folder`` and everything under it the modes mkdir/open would have given."""
    fmode, dmode = file_mode(), folder_mode()
    folder.chmod(dmode)
    for f in folder.rglob("*"):
        if not f.is_symlink():
            f.chmod(dmode if f.is_dir() else fmode)


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a folder can't be opened everywhere (Windows)
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:  # some file systems can't sync a folder
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def move_into_place(tmp: Path, path: Path, durable: bool = False) -> None:
    """Rename a finished temporary file onto ``path`` with the usual file mode;
    ``durable`` syncs the data (and then the folder) to disk around the rename."""
    os.chmod(tmp, file_mode())
    if durable:
        _fsync(tmp)
    os.replace(tmp, path)
    if durable:
        _fsync(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "", durable: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed onto ``path`` when
    the block succeeds, removed when it fails (``path`` is then untouched). ``suffix``
    gives the temporary file the ending a writer may insist on (numpy's ``.npz``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        move_into_place(tmp, target, durable)
    finally:
        tmp.unlink(missing_ok=True)


def write_with(path: str | Path, write: Callable[[Path], Any], suffix: str = "") -> None:
    """``write(tmp)`` then rename onto ``path``: for writers that take a path (pandas,
    numpy, safetensors)."""
    with atomic_path(path, suffix) as tmp:
        write(tmp)


def write_bytes(path: str | Path, data: bytes, durable: bool = False) -> None:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str, durable: bool = False) -> None:
    write_bytes(path, text.encode("utf-8"), durable)


def to_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON (no NaN; numpy scalars as plain numbers), with a final newline."""
    return json.dumps(data, indent=indent, allow_nan=False, default=_json_default) + "\n"


def write_json(path: str | Path, data: Any, indent: int | None = 2, durable: bool = False) -> None:
    write_text(path, to_json(data, indent), durable)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- folders ------------------------------------------------------------------------------------


def swap_folder(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final`` (same file system), replacing what is
    there only once the new one is complete; if the last rename fails, the old folder is
    put back. Modes are made the usual ones first."""
    apply_usual_modes(tmp)
    if not final.exists():
        os.replace(tmp, final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    try:
        os.replace(final, old / final.name)
    except OSError:
        old.rmdir()
        raise
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(old / final.name, final)  # put the old folder back
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


def replace_folder(folder: Path, files: Mapping[str, bytes]) -> None:
    """A folder holding exactly ``files`` (name -> content) swapped in for ``folder``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        swap_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- JSON lines ---------------------------------------------------------------------------------


def json_line(record: Mapping[str, Any]) -> str:
    """One record as one line of JSON lines."""
    return json.dumps(record) + "\n"


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    write_text(path, "".join(json_line(r) for r in records))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a missing file is empty and a damaged line (a
    write cut short) is skipped, since such files are logs for reading, not state."""
    p = Path(path)
    if not p.is_file():
        return []
    records = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records
