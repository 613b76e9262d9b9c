"""Commands in hints as they will run from where the user stands.

A message says ``polytask predict ...`` or ``pip install 'polytask[export]'``; typed as
printed, that fails when polytask lives in ``.venv/bin`` and is not on the PATH, or when
it was started as ``python -m polytask``. The CLI rewrites both in what it prints to the
command that was run (``sys.argv[0]``) and to the pip of the interpreter running it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

VERBS = ("train", "evaluate", "predict", "compare", "report", "serve", "export", "demo")
_VERB = re.compile(r"(?<![\w./-])(?<!-m )polytask (" + "|".join(VERBS) + r")\b")
_PIP = re.compile(r"(?<![\w./-])pip install\b")


def _same(a: str | None, b: str) -> bool:
    try:
        return a is not None and os.path.samefile(a, b)
    except OSError:
        return False


def _shortest(path: str) -> str:
    """``path`` relative to the working folder where that is shorter (``.venv/bin/x``)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    if not rel.startswith(".."):
        rel = rel if os.sep in rel else f".{os.sep}{rel}"
        return rel if len(rel) < len(path) else path
    return path


def python() -> str:
    """How to name this interpreter: ``python`` where that is the one on the PATH."""
    for name in ("python", "python3"):
        if _same(shutil.which(name), sys.executable):
            return name
    return _shortest(sys.executable)


def command(argv0: str | None = None) -> str:
    """How to run polytask again from here: ``polytask`` where the PATH finds the
    command that ran, else that command's path (``.venv/bin/polytask``); ``python -m
    polytask`` when it was started so."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    name = Path(argv0).name
    if name == "__main__.py" and Path(argv0).parent.name == "polytask":
        return f"{python()} -m polytask"
    if name.startswith("polytask") and Path(argv0).is_file():
        if _same(shutil.which("polytask"), argv0):
            return "polytask"
        return argv0 if os.sep in argv0 else _shortest(str(Path(argv0).resolve()))
    return "polytask"  # called in-process (tests, a notebook)


def pip() -> str:
    """``pip`` where the PATH's pip installs into this interpreter, else ``PYTHON -m pip``."""
    found = shutil.which("pip")
    if found is not None and _same(str(Path(found).parent), str(Path(sys.executable).parent)):
        return "pip"
    if sys.prefix == sys.base_prefix and found is not None:
        return "pip"
    return f"{python()} -m pip"


def as_run(message: str) -> str:
    """``message`` with its ``polytask VERB`` and ``pip install`` as they run from here."""
    if "polytask " in message:
        cmd = command()
        if cmd != "polytask":
            message = _VERB.sub(lambda m: f"{cmd} {m.group(1)}", message)
    if "pip install" in message:
        p = pip()
        if p != "pip":
            message = _PIP.sub(f"{p} install", message)
    return message
