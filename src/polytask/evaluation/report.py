"""One self-contained HTML report for a run or a comparison, plus its plots as PNG files.

``write_report(DIR)`` writes ``DIR/report.html`` (plots embedded as base64 PNG, no other
file needed to view it) and the same plots under ``DIR/report_plots/`` (``polytask
train`` writes only the HTML file into the run, which stays a flat folder of files). A run's report
shows its metrics, learning curves per task, task weights, gradient conflict and task
affinity (when measured); a comparison's report adds the comparison table, Δm per
variant and the per-task verdicts. Files are written atomically: a reader never sees a
half-written report.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from polytask import run_dir
from polytask.analysis.affinity import WEAK, AffinitySummary, summarise_affinity
from polytask.analysis.conflict import (
    CONFLICT_LABELS,
    ConflictSummary,
    cosine_matrix,
    summarise_conflict,
)
from polytask.config import load_yaml, parse_saved_config
from polytask.errors import PolytaskError
from polytask.evaluation.html import REPORT, Page, plots_dir, replace_folder
from polytask.evaluation.layout import is_comparison, slug_run_path
from polytask.evaluation.plots import (
    cosine_over_training,
    delta_m_bars,
    heatmap,
    learning_curves,
    task_weights,
)
from polytask.evaluation.race_section import race_section
from polytask.evaluation.sections import (
    CONFLICT_HEADER,
    CONFLICT_RULE,
    VERDICT_HEADER,
    caption,
    conflict_cells,
    cost_text,
    failure_lines,
    header,
    table_rows,
    verdict_lines,
)
from polytask.evaluation.summary import Comparison, summarise_comparison
from polytask.evaluation.trust import trust_sections
from polytask.io import write_text as write_text_atomic
from polytask.metrics.delta_m import headline_of
from polytask.model import build_tasks

__all__ = ["REPORT", "compare_page", "plots_dir", "run_page", "write_report"]

# -- shared sections ----------------------------------------------------------------------------


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _conflict_section(
    page: Page, conflict: ConflictSummary | None, names: list[str], who: str
) -> None:
    if conflict is None:
        return
    pairs = conflict.pairs
    page.h2("Gradient conflict", "conflict")
    page.p(
        f"Cosine similarity of the task gradients, logged every few steps while training "
        f"{who}. Below 0 the tasks pull the shared layers in opposite directions. "
        "Trend: change of the cosine from the start to the end of training (least-squares "
        f"slope). {CONFLICT_RULE}"
    )
    classes = [
        [None, None, None, "label", None, None, "label bad" if bad else "label"]
        for bad in (p.label in CONFLICT_LABELS for p in pairs)
    ]
    page.table(CONFLICT_HEADER, conflict_cells(pairs), cell_classes=classes)
    fig = heatmap(
        cosine_matrix(names, pairs),
        names,
        "Mean gradient cosine",
        limit=1.0,
        cbar_label="cosine",
    )
    over = cosine_over_training(conflict.over_training)
    page.parts.append('<div class="row">')
    page.figure("conflict_heatmap", fig)
    page.parts.append("</div>")
    page.figure("conflict_over_training", over)


AFFINITY_TEXT = (
    "Lookahead affinity (Fifty et al. 2021) measured every {every} steps "
    "while training {who}: Z[i→j] = 1 − L_j(after one plain gradient step on task i "
    "alone) / L_j(before), on the same batch. Row i, column j: how a step for task i "
    "changes task j's loss; > 0 (blue) means i helps j, < 0 (red) that it hurts j. "
    "The size scales with the learning rate; compare entries with each other. The "
    "diagonal (a task's step on its own loss) is grey and outside the colour scale; in "
    "brackets, an entry as a share of its column's diagonal (how much a step for i "
    "does for j, next to a step for j itself). The colours reach at least ±10% of "
    "the mean diagonal, so weak effects stay pale."
)


def _affinity_section(page: Page, aff: AffinitySummary | None, who: str) -> None:
    if not aff:
        return
    page.h2("Task affinity", "affinity")
    page.p(AFFINITY_TEXT.format(every=aff.every, who=who))
    page.p(cost_text(aff.seconds, aff.share, "the training time"), "meta")
    page.figure("affinity_heatmap", _affinity_heatmap(aff))
    strength = aff.strength
    if aff.groupings and strength is not None and strength < WEAK:
        page.p(
            f"The effects between tasks are weak: at most {strength * 100:.1f}% of a task's "
            "effect on itself. The grouping below follows them, but they say little about "
            "whether to train the tasks together: the comparison's verdicts do.",
            "meta",
        )
    if aff.groupings:
        page.p(
            "Recommended grouping into G models: the partition that maximises the total "
            "affinity within groups (each task counts the mean affinity onto it from its "
            "group's other tasks; a task alone counts 0). Exhaustive search."
        )
        page.table(
            ["models", "groups", "total affinity"],
            [[str(len(g.groups)), g.describe(), f"{g.score:+.3g}"] for g in aff.groupings],
            left=2,
        )


def _affinity_heatmap(aff: AffinitySummary) -> Any:
    """Z with each off-diagonal entry's share of its column's diagonal written under it."""
    matrix, names = aff.matrix, aff.tasks
    diag = np.diag(matrix)
    notes = [
        [
            ""
            if i == j or not (np.isfinite(matrix[i, j]) and diag[j] > 0)
            else f"({100 * matrix[i, j] / diag[j]:+.0f}%)"
            for j in range(len(names))
        ]
        for i in range(len(names))
    ]
    return heatmap(
        matrix,
        names,
        "Task affinity Z[i→j]",
        row_label="step on task i",
        col_label="effect on task j's loss",
        cbar_label="Z",
        muted_diagonal=True,
        rescale=True,
        floor=0.1 * float(np.nanmean(diag)) if np.isfinite(diag).any() else 0.0,
        notes=notes,
    )


def _curves(
    page: Page,
    history: list[dict[str, Any]],
    headline: dict[str, dict[str, bool]],
    prefix: str = "",
) -> None:
    page.figure(f"{prefix}learning_curves", learning_curves(history, headline))
    drawn = page.figure(
        f"{prefix}task_weights",
        task_weights(history),
        "Mean task weight per epoch over the logged steps (for gradient methods: the "
        "weights implied by each step's combination).",
    )
    if not drawn and any(r.get("weights") for r in history):
        page.p("Task weights stayed constant over training (no plot).", "meta")


# -- a run ----------------------------------------------------------------------------------------


def run_page(folder: Path) -> Page:
    run_dir.check_run(folder)
    cfg = parse_saved_config(
        load_yaml((folder / run_dir.CONFIG).read_text(encoding="utf-8")),
        where=str(folder / run_dir.CONFIG),
    )
    tasks = build_tasks(cfg)
    metrics = (
        run_dir.read_json(folder / run_dir.METRICS) if (folder / run_dir.METRICS).is_file() else {}
    )
    info = run_dir.read_json(folder / run_dir.INFO) if (folder / run_dir.INFO).is_file() else {}
    history = run_dir.read_history(folder)

    page = Page(f"polytask run {folder.name}")
    page.h1(f"Run report: {folder.name}")
    kinds = ", ".join(f"{t.name} ({t.kind})" for t in tasks)
    page.p(
        f"Tasks: {kinds}. Architecture {cfg.model.architecture}, hidden "
        f"{cfg.model.hidden}, balancing {cfg.balancing.method}. "
        f"{info.get('epochs_run', len(history))} epochs in {info.get('train_seconds', '?')}s; "
        f"the epoch kept (best on validation): {info.get('best_epoch', '?')}.",
        "meta",
    )
    _run_metrics(page, tasks, metrics)
    race_section(page, folder)
    trust_sections(page, folder)  # calibration, intervals, permutation importance
    if history:
        page.h2("Learning curves", "curves")
        _curves(page, history, headline_of(tasks))
    names = [t.name for t in tasks]
    if len(names) > 1:
        _conflict_section(page, summarise_conflict([history]), names, "this run")
        _affinity_section(page, summarise_affinity([history]), "this run")
    return page


def _run_metrics(page: Page, tasks: list[Any], metrics: dict[str, Any]) -> None:
    """Every metric of every task on each split, the headline ones highlighted."""
    page.h2("Metrics", "metrics")
    splits = [s for s in ("train", "validation", "test") if s in metrics]
    rows, classes = [], []
    for t in tasks:
        names = [
            m for m in (metrics.get(splits[0], {}).get(t.name, {}) if splits else {}) if m != "n"
        ]
        for i, m in enumerate(names):
            head = m in t.headline
            arrow = (" ↑" if t.headline[m] else " ↓") if head else ""
            rows.append(
                [
                    t.name if i == 0 else "",
                    m + arrow,
                    *[_num(metrics[s].get(t.name, {}).get(m)) for s in splits],
                ]
            )
            classes.append("chosen" if head else None)
    page.table(["task", "metric", *splits], rows, row_classes=classes, left=2)
    page.p("Highlighted: each task's headline metric (used for Δm and model comparison).", "meta")


# -- a comparison -------------------------------------------------------------------------------


def compare_page(folder: Path, c: Comparison | None = None) -> Page:
    """The comparison's page, from its summary (read from ``folder`` unless given)."""
    c = c if c is not None else summarise_comparison(folder)
    page = Page(f"polytask comparison {folder.name}")
    page.h1("Does sharing help?")
    page.p(
        f"Comparison {folder.name}: tasks {', '.join(c.tasks)}; {len(c.seeds)} seed(s); "
        f"methods {', '.join(c.methods)}; architectures {', '.join(c.architectures)}.",
        "meta",
    )
    page.parts.append(f'<p class="formula">{html.escape(c.formula)}</p>')
    page.h2("Comparison (test split)", "table")
    page.table(
        header(c),
        table_rows(c),
        row_classes=["chosen" if r.name == c.chosen else None for r in c.rows],
    )
    page.p(caption(c), "meta")
    page.figure("delta_m", delta_m_bars(c))
    _verdict_section(page, c)
    who = c.affinity.variant if c.affinity else None
    _affinity_section(page, c.affinity, who or "")
    if c.conflict is not None:
        _conflict_section(page, c.conflict, c.tasks, f"{c.conflict.variant} (all seeds)")
    _chosen_curves(page, folder, c)
    if c.failures:
        page.h2("Failed runs", "failures")
        page.items(failure_lines(c.failures))
    for note in c.notes:
        page.p(f"Note: {note}", "meta")
    return page


def _verdict_section(page: Page, c: Comparison) -> None:
    if not c.verdicts:
        return
    page.h2(f"Verdicts: {c.chosen} vs single-task", "verdicts")
    page.p(
        "Per task and headline metric, the variant chosen on validation against the "
        "single-task model on test. Clear: Welch's t-test over seeds gives p < 0.05. A "
        "clear loss is negative transfer."
    )
    classes = [
        [None] * 6
        + ["label " + ("bad" if v.negative_transfer else ("good" if v.clear else "muted"))]
        for v in c.verdicts
    ]
    page.table(VERDICT_HEADER, verdict_lines(c), cell_classes=classes)


def _chosen_curves(page: Page, folder: Path, c: Comparison) -> None:
    """Learning curves of the chosen variant's first finished seed."""
    row = c.row(c.chosen) if c.chosen else None
    if row is None or row.slug is None or not row.seeds:
        return
    seed = row.seeds[0]
    history = run_dir.read_history(slug_run_path(folder, row.slug, seed))
    if history:
        page.h2(f"Learning curves: {row.name}, seed {seed}", "curves")
        _curves(page, history, c.headline, prefix="chosen_")


# -- entry point ---------------------------------------------------------------------------------


def _written_by_polytask(path: Path) -> bool:
    """The page's last lines carry polytask's signature (see html.Page)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            return b"Written by polytask on" in f.read()
    except OSError:
        return False


def write_report(
    source: str | Path,
    output: str | Path | None = None,
    overwrite: bool = False,
    plots: bool = True,
) -> Path:
    """Write the report of a run or comparison folder; returns the HTML file's path.
    One rule for what is replaced: without ``overwrite`` polytask replaces only a report
    it wrote itself at its own place, ``SOURCE/report.html`` (what train and compare
    write); a file named by ``output``, or a ``SOURCE/report.html`` polytask did not
    write, is replaced only with ``overwrite``. With ``plots`` the PNG files also go to
    the folder beside it (``report_plots/``); the HTML holds them either way."""
    src = Path(source)
    if not src.is_dir():
        raise PolytaskError(
            f"'{src}' is not a folder; pass a run directory (train `out`) or a comparison "
            "directory (compare `out`)"
        )
    out = Path(output) if output is not None else src / REPORT
    own = output is None and out.is_file() and _written_by_polytask(out)
    if out.exists() and not (overwrite or own or not out.is_file()):
        whose = "" if output is not None else " and polytask did not write it"
        raise PolytaskError(f"'{out}' already exists{whose}; pass `overwrite=True` to replace it")
    if out.exists() and out.is_dir():
        raise PolytaskError(f"'{out}' is a folder; `output` names the HTML file to write")
    page = compare_page(src) if is_comparison(src) else run_page(src)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if plots:
            replace_folder(plots_dir(out), page.images)
        write_text_atomic(out, page.html())
    except OSError as err:
        raise PolytaskError(
            f"cannot write the report '{out}' ({err.strerror or err}); choose a writable `output`"
        ) from None
    return out
