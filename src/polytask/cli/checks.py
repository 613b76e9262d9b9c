"""Checks that need no data and no torch, run before a verb imports the library.

A mistake in the command line (an unknown kind, method or architecture, a data file or
run folder that is not there) gets its one-line error in well under a second, instead of
after the seconds that importing torch, scipy and scikit-learn take. The library checks
the same things again where it uses them; these are the early copies, with the same
messages, reading the registries' names from their source (:mod:`polytask.cli.static`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from polytask.cli.static import registry
from polytask.errors import PolytaskError, did_you_mean
from polytask.run_dir import check_run


def known(module: str, name: str) -> tuple[str, ...]:
    """A registry's names from its source, plus any registered in this process (a custom
    task kind registered before calling the CLI in-process) when its module is loaded."""
    names = registry(module, name)
    live = sys.modules.get(module)
    extra = tuple(n for n in getattr(live, name, ()) if n not in names) if live else ()
    return names + extra


def check_name(what: str, name: str, names: Iterable[str]) -> None:
    """The registries' own message for an unknown name."""
    names = list(names)
    if name not in names:
        raise PolytaskError(
            f"unknown {what} '{name}'{did_you_mean(name, names)}; choose one of {', '.join(names)}"
        )


def check_data_file(path: str | Path | None) -> None:
    """A data path that does not exist at all (a folder or glob is the reader's to judge)."""
    if path is None or any(c in str(path) for c in "*?["):
        return
    if not Path(path).exists():
        raise PolytaskError(f"data file '{path}' does not exist; check the path")


def check_run_config(cfg: Any) -> None:
    """The names and files of a run config that can be wrong without any data."""
    kinds = known("polytask.tasks", "KINDS")
    for task in cfg.tasks:
        check_name("task kind", task.kind, kinds)
    methods = (*known("polytask.balancing", "METHODS"), "auto")  # auto: polytask.auto's race
    check_name("balancing method", cfg.balancing.method, methods)
    architectures = known("polytask.architectures", "ARCHITECTURES")
    check_name("architecture", cfg.model.architecture, architectures)
    for path in (cfg.data.path, cfg.data.validation, cfg.data.test):
        check_data_file(path)


def check_run_and_data(run: str, data: str | None = None) -> None:
    """evaluate, predict, serve, export: the run folder is a finished run, the data is there."""
    check_run(Path(run))
    check_data_file(data)
