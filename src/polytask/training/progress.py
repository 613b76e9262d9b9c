"""A rich progress bar that shows each task's running loss, refreshed a few times a second."""

from __future__ import annotations

import shutil
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

    @property
    def width(self) -> int:
        """The terminal's width (the bar's console's, or stderr's)."""
        if self.enabled:
            return int(self.console.width)
        return shutil.get_terminal_size((100, 24)).columns

    def log(self, message: str) -> None:
        """A line above the bar (or on stderr when there is no bar)."""
        if self.enabled:
            self.progress.console.print(message, highlight=False)
        else:
            print(message, file=sys.stderr)


def format_losses(names: list[str], losses: torch.Tensor) -> str:
    """The bar's text: each task's running mean loss."""
    return "  ".join(f"{n} {v:.4f}" for n, v in zip(names, losses.tolist(), strict=True))


def epoch_summary(
    tasks: list[Task], record: dict[str, Any], width: int | None = None, epochs: int | None = None
) -> str:
    """One line per epoch, each task named beside its numbers: ``task train->val loss,
    headline metric``, then ``* best`` on a new best. Where the line is wider than
    ``width`` (the terminal's) it breaks between tasks, never inside one, and the
    continuation lines are indented under the first task."""
    head = f"epoch {record['epoch']:>3}" + (f"/{epochs}" if epochs else "") + "  "
    train, val = record["train"]["loss"], record.get("validation")
    parts = []
    for t in tasks:
        text = f"{t.name} {train[t.name]:.4f}"
        if val is not None:
            m = next(iter(t.headline))
            v = val["metrics"][t.name].get(m)
            text += f"→{val['loss'][t.name]:.4f} {m} " + ("-" if v is None else f"{v:.4f}")
        parts.append(text)
    if record["best"]:
        parts.append("* best")
    width = width or shutil.get_terminal_size((100, 24)).columns
    lines, line, first = [], head, True
    for part in parts:
        if not first and len(line) + 3 + len(part) > width:
            lines.append(line)
            line, first = " " * len(head), True
        line += ("" if first else " · ") + part
        first = False
    lines.append(line)
    return "\n".join(lines)


#: the legend printed once above the epoch lines
EPOCH_LEGEND = "per task: training loss→validation loss, validation headline metric"
