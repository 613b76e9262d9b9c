"""A rich progress bar that shows each task's running loss, refreshed a few times a second."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    import torch

    from polytask.tasks import Task

REFRESH_SECONDS = 0.2


class TrainingProgress:
    """Cheap to call every step: it only redraws every ``REFRESH_SECONDS``."""

    def __init__(self, epochs: int, steps_per_epoch: int, enabled: bool = True):
        self.enabled = enabled
        self.steps = steps_per_epoch
        self._last = 0.0
        if not enabled:
            return
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/" + str(epochs)),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[losses]}"),
            console=self.console,
            # rich redraws from a background thread; faster than our updates is wasted work
            refresh_per_second=1 / REFRESH_SECONDS,
            transient=not self.console.is_terminal,
            disable=not (self.console.is_terminal or sys.stderr.isatty()),
        )
        self.bar = self.progress.add_task("train", total=steps_per_epoch, epoch=0, losses="")

    def __enter__(self) -> TrainingProgress:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            self.progress.stop()

    def due(self) -> bool:
        """True when a redraw is due (the caller then formats losses and calls step)."""
        if not self.enabled:
            return False
        now = time.perf_counter()
        if now - self._last >= REFRESH_SECONDS:
            self._last = now
            return True
        return False

    def step(self, completed: int, epoch: int, losses: str | None = None) -> None:
        if not self.enabled:
            return
        fields: dict[str, Any] = {"losses": losses} if losses is not None else {}
        self.progress.update(self.bar, completed=completed, epoch=epoch, **fields)

    def log(self, message: str) -> None:
        """A line above the bar (or on stderr when there is no bar)."""
        if self.enabled:
            self.progress.console.print(message, highlight=False)
        else:
            print(message, file=sys.stderr)


def format_losses(names: list[str], losses: torch.Tensor) -> str:
    """The bar's text: each task's running mean loss."""
    return "  ".join(f"{n} {v:.4f}" for n, v in zip(names, losses.tolist(), strict=True))


def epoch_summary(tasks: list[Task], record: dict[str, Any]) -> str:
    """One line per epoch: train and validation losses, each task's headline metric and
    a ``*`` on a new best."""
    parts = [f"epoch {record['epoch']:>3}"]
    parts.append("train " + " ".join(f"{v:.4f}" for v in record["train"]["loss"].values()))
    if "validation" in record:
        parts.append("val " + " ".join(f"{v:.4f}" for v in record["validation"]["loss"].values()))
        heads = []
        for t in tasks:
            m = next(iter(t.headline))
            v = record["validation"]["metrics"][t.name].get(m)
            heads.append(f"{t.name}.{m} {v:.4f}" if v is not None else f"{t.name}.{m} -")
        parts.append(" ".join(heads))
    if record["best"]:
        parts.append("*")
    return " | ".join(parts)
