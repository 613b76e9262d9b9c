"""A comparison's files: results.json, results.md (Markdown) and results.csv."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from polytask.analysis.affinity import WEAK, AffinitySummary
from polytask.evaluation.sections import (
    CONFLICT_HEADER,
    CONFLICT_RULE,
    VERDICT_HEADER,
    caption,
    conflict_cells,
    cost_text,
    failure_lines,
    header,
    metric_columns,
    table_rows,
    verdict_lines,
)
from polytask.evaluation.summary import Comparison
from polytask.io import write_json as write_json_atomic
from polytask.io import write_text as write_text_atomic

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"


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
        cells = conflict_cells(c.conflict.pairs)
        parts += [_md_table(CONFLICT_HEADER, cells, left=(0, 3, 6)), "", CONFLICT_RULE, ""]
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
