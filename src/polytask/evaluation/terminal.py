"""A comparison in the terminal (rich): the table, or one block per variant where the
terminal is too narrow, then the verdicts, the grouping, failed runs and notes."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from polytask.evaluation.sections import (
    VERDICT_HEADER,
    caption,
    conflict_lines,
    failure_lines,
    header,
    table_rows,
    verdict_lines,
)
from polytask.evaluation.summary import Comparison


def _natural_width(head: list[str], rows: list[list[str]]) -> int:
    """Width a table needs without wrapping a cell (headers may wrap at spaces)."""
    widths = [max(len(w) for w in h.split()) if h.strip() else 1 for h in head]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return sum(widths) + 2 * len(widths)


def _long_form(c: Comparison, console: Any) -> None:
    """The table as one block per variant, for terminals too narrow for its columns."""

    def indented(text: str, style: str = "") -> Padding:
        return Padding(Text(text, style=style), (0, 0, 0, 4))

    console.print(Text("Does sharing help? (test split)", style="bold"))
    for r, cells in zip(c.rows, table_rows(c, compact=True), strict=True):
        name, seeds, *metrics = cells
        dm, val, rank, sec, params = metrics[-5:]
        line = Text(name, style="bold" if r.name == c.chosen else "")
        line.append(f"  Δm% {dm} (val {val})  mean rank {rank}")
        console.print(line)
        cols = [f"{h} {v}" for h, v in zip(header(c)[2:-5], metrics[:-5], strict=True)]
        joined = " · ".join(cols)
        for part in [joined] if len(joined) <= console.width - 4 else cols:
            console.print(indented(part))
        console.print(indented(f"seeds {seeds}, {sec} s/epoch, {params} params", "dim"))
    console.print(Text(caption(c), style="dim"))
    if c.verdicts:
        title = f"Verdicts: {c.chosen} vs single-task (clear: Welch p < 0.05)"
        console.print(Text(title, style="bold"))
        for v, cells in zip(c.verdicts, verdict_lines(c), strict=True):
            task, metric, stl, mtl, diff, p, label = cells
            color = "red" if v.negative_transfer else ("green" if v.clear else "")
            console.print(Text(f"{task} {metric}: ").append(label, style=color))
            console.print(indented(f"single-task {stl}, multi-task {mtl} ({diff}, p {p})"))


def print_table(c: Comparison, console: Any = None) -> None:
    """The comparison and verdicts in the terminal (rich); one block per variant when the
    terminal is too narrow for the table."""
    console = console or Console()
    if _natural_width(header(c), table_rows(c, compact=True)) > console.width:
        _long_form(c, console)
        _print_notes(c, console)
        return
    table = Table(
        title="Does sharing help? (test split)",
        caption=caption(c),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for i, h in enumerate(header(c)):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for r, cells in zip(c.rows, table_rows(c, compact=True), strict=True):
        style = "bold" if r.name == c.chosen else None
        table.add_row(*cells, style=style)
    console.print(table)
    if c.verdicts:
        vt = Table(
            title=f"Verdicts: {c.chosen} vs single-task (clear: Welch p < 0.05)",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for i, h in enumerate(VERDICT_HEADER):
            vt.add_column(h, justify="left" if i in (0, 1, 6) else "right")
        for v, cells in zip(c.verdicts, verdict_lines(c), strict=True):
            color = "red" if v.negative_transfer else ("green" if v.clear else None)
            vt.add_row(*cells, style=color)
        console.print(vt)
    _print_notes(c, console)


def _print_notes(c: Comparison, console: Any) -> None:
    if c.affinity:
        for g in c.affinity.groupings[1:2]:  # the two-model recommendation
            console.print(f"task affinity: best split into {len(g.groups)} models: {g.describe()}")
    if c.conflict is not None:
        console.print(f"gradient conflict ({c.conflict.variant}):", highlight=False)
        for line in conflict_lines(c.conflict.pairs):
            console.print(f"  {line}", highlight=False)
    for line in failure_lines(c.failures):
        console.print(f"[red]failed[/]: {line}")
    for note in c.notes:
        console.print(f"note: {note}")
