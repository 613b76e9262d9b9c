"""A comparison as tables: Markdown, CSV, JSON files and a terminal table (rich)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from polytask.analysis.affinity import WEAK, AffinitySummary
from polytask.evaluation.sections import conflict_cells, cost_text, failure_lines
from polytask.evaluation.summary import Comparison, Row
from polytask.io import write_json as write_json_atomic
from polytask.io import write_text as write_text_atomic

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def metric_columns(c: Comparison) -> list[tuple[str, str, bool]]:
    return [(t, m, hi) for t, ms in c.headline.items() for m, hi in ms.items()]


def _cell(row: Row, task: str, metric: str, compact: bool = False) -> str:
    s = row.test.get(task, {}).get(metric)
    if s is None:
        return "-"
    if compact:
        return f"{s['mean']:.3f}±{s['std']:.3f}"
    return f"{s['mean']:.4f} ± {s['std']:.4f}"


def _delta(row: Row, compact: bool = False) -> str:
    if row.delta_m is None:
        return "-"
    if row.delta_m_std is None:
        return _signed(row.delta_m)
    sep = "±" if compact else " ± "
    return f"{row.delta_m:+.2f}{sep}{row.delta_m_std:.2f}"


def _name(c: Comparison, row: Row) -> str:
    return f"{row.name} *" if row.name == c.chosen else row.name


def _params(row: Row) -> str:
    return "-" if row.params is None else f"{row.params:,}"


def _seeds(c: Comparison, row: Row) -> str:
    done = f"{len(row.seeds)}/{len(c.seeds)}"
    return done + (f" ({len(row.failures)} failed)" if row.failures else "")


def header(c: Comparison) -> list[str]:
    arrows = [f"{t}.{m} {'↑' if hi else '↓'}" for t, m, hi in metric_columns(c)]
    return [
        "variant",
        "seeds",
        *arrows,
        "Δm% test",
        "Δm% val",
        "mean rank",
        "s/epoch",
        "params",
    ]


def table_rows(c: Comparison, compact: bool = False) -> list[list[str]]:
    """One row of cells per table row; ``compact`` for the terminal (3 decimals)."""
    out = []
    for r in c.rows:
        out.append(
            [
                _name(c, r),
                _seeds(c, r),
                *[_cell(r, t, m, compact) for t, m, _ in metric_columns(c)],
                _delta(r, compact),
                _signed(r.delta_m_validation),
                _fmt(r.mean_rank, 2),
                _fmt(r.seconds_per_epoch, 3),
                _params(r),
            ]
        )
    return out


def caption(c: Comparison) -> str:
    return (
        f"Test split, mean ± std over {len(c.seeds)} seed(s). {c.formula}. "
        "* = the variant chosen on the validation split (lowest validation Δm). "
        "Single-task: one model per task; its s/epoch and params are their sums."
    )


def verdict_lines(c: Comparison) -> list[list[str]]:
    rows = []
    for v in c.verdicts:
        p = "-" if v.p_value is None else f"{v.p_value:.3f}"
        rows.append(
            [
                v.task,
                f"{v.metric} {'↑' if v.higher_is_better else '↓'}",
                f"{v.stl_mean:.4f} ± {v.stl_std:.4f}",
                f"{v.mtl_mean:.4f} ± {v.mtl_std:.4f}",
                f"{v.difference:+.4f}",
                p,
                v.label,
            ]
        )
    return rows


VERDICT_HEADER = [
    "task",
    "metric",
    "single-task",
    "multi-task",
    "difference",
    "p (Welch)",
    "verdict",
]


def _md_table(head: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)) -> str:
    """A Markdown table; columns in ``left`` hold text (left-aligned), the rest numbers."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in head) + " |"]
    lines.append("| " + " | ".join("---" if i in left else "---:" for i in range(len(head))) + " |")
    lines += ["| " + " | ".join(esc(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(c: Comparison) -> str:
    parts = ["# Does sharing help?", "", caption(c), "", _md_table(header(c), table_rows(c)), ""]
    if c.chosen:
        parts += [
            f"## Verdicts: {c.chosen} (chosen on validation) vs single-task",
            "",
            "Clear = Welch's t-test over seeds, p < 0.05; a clear loss is negative transfer.",
            "",
            _md_table(VERDICT_HEADER, verdict_lines(c), left=(0, 1, 6)),
            "",
        ]
    if c.affinity:
        parts += _md_affinity(c.affinity)
    if c.conflict:
        parts += [f"## Gradient conflict ({c.conflict.variant})", ""]
        head = ["pair", "mean cosine", "epochs < 0", "trend over training", ""]
        parts += [_md_table(head, conflict_cells(c.conflict.pairs), left=(0, 4)), ""]
    if c.failures:
        parts += ["## Failed runs", "", *[f"- {line}" for line in failure_lines(c.failures)], ""]
    for note in c.notes:
        parts.append(f"Note: {note}")
    return "\n".join(parts).rstrip() + "\n"


def _md_affinity(a: AffinitySummary) -> list[str]:
    parts = [f"## Task affinity ({a.variant}, lookahead every {a.every} steps)", ""]
    parts += ["Z[i→j] = 1 − L_j(after a step on task i alone) / L_j(before); > 0: i helps j.", ""]
    rows = [
        [f"step on {src}", *["-" if math.isnan(v) else f"{v:.3g}" for v in a.matrix[i]]]
        for i, src in enumerate(a.tasks)
    ]
    parts += [_md_table(["", *[f"→ {n}" for n in a.tasks]], rows), ""]
    parts.append(cost_text(a.seconds, a.share, "training time"))
    strength = a.strength
    if strength is not None:
        weak = " (weak: the grouping says little)" if strength < WEAK else ""
        parts.append(
            f"Largest effect between tasks: {strength * 100:.1f}% of the target task's "
            f"effect on itself{weak}."
        )
    parts.append("")
    for g in a.groupings:
        parts.append(f"- {len(g.groups)} model(s): {g.describe()} (total affinity {g.score:+.3g})")
    parts.append("")
    return parts


def to_csv(c: Comparison) -> str:
    buf = io.StringIO()
    cols = metric_columns(c)
    head = ["variant", "kind", "method", "architecture", "seeds_ok", "failed_runs"]
    for t, m, _ in cols:
        head += [f"{t}.{m}.mean", f"{t}.{m}.std"]
    head += [
        "delta_m_pct",
        "delta_m_pct_std",
        "delta_m_pct_validation",
        "mean_rank",
        "seconds_per_epoch",
        "params",
        "chosen_on_validation",
    ]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in c.rows:
        line: list[Any] = [
            r.name,
            r.kind,
            r.method or "",
            r.architecture or "",
            len(r.seeds),
            len(r.failures),
        ]
        for t, m, _ in cols:
            s = r.test.get(t, {}).get(m)
            line += ["" if s is None else s["mean"], "" if s is None else s["std"]]
        line += [
            "" if x is None else x
            for x in (
                r.delta_m,
                r.delta_m_std,
                r.delta_m_validation,
                r.mean_rank,
                r.seconds_per_epoch,
                r.params,
            )
        ]
        line.append(r.name == c.chosen)
        w.writerow(line)
    return buf.getvalue()


def write_results(out: str | Path, c: Comparison) -> list[Path]:
    """results.json, results.md and results.csv in ``out`` (each written atomically)."""
    out = Path(out)
    write_json_atomic(out / RESULTS_JSON, c.to_dict())
    write_text_atomic(out / RESULTS_MD, to_markdown(c))
    write_text_atomic(out / RESULTS_CSV, to_csv(c))
    return [out / RESULTS_JSON, out / RESULTS_MD, out / RESULTS_CSV]


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
    for line in failure_lines(c.failures):
        console.print(f"[red]failed[/]: {line}")
    for note in c.notes:
        console.print(f"note: {note}")
