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

import base64
import html
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from polytask import io, run_dir
from polytask.errors import PolytaskError
from polytask.evaluation.affinity import WEAK, relative_strength
from polytask.io import write_text as write_text_atomic

REPORT = "report.html"

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-top: 8px; border-top: 1px solid #e3e5e8; }
p, li { line-height: 1.45; font-size: 14px; }
.meta { color: #555; font-size: 13px; }
.formula { background: #f3f6fb; border-left: 4px solid #4a78c2; padding: 8px 12px;
           font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e5e8; padding: 5px 10px; text-align: right;
         white-space: nowrap; }
th { background: #f3f4f6; font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
table.left2 td:nth-child(2), table.left2 th:nth-child(2) { text-align: left; }
td.label { text-align: left; }
tr.chosen td { font-weight: 700; background: #fff8e1; }
.good { color: #1b7f2a; font-weight: 600; }
.bad { color: #c62828; font-weight: 700; }
.muted { color: #777; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; }
.row { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.row figure { flex: 1 1 420px; }
.scroll { overflow-x: auto; }
"""


# -- files ----------------------------------------------------------------------------------------


def plots_dir(output: Path) -> Path:
    """Where the report's PNG files go: ``report_plots/`` beside ``report.html``."""
    return output.with_name(f"{output.stem}_plots")


def _replace_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a new folder and swap it in for ``folder`` (which, if it exists,
    must hold only PNG files: an earlier report's plots)."""
    foreign = folder.exists() and (
        not folder.is_dir()
        or any(not (f.is_file() and f.suffix == ".png") for f in folder.iterdir())
    )
    if foreign:
        raise PolytaskError(
            f"'{folder}' exists and holds more than report plots; move it away or "
            "choose another --output"
        )
    io.replace_folder(folder, files)


# -- the page -----------------------------------------------------------------------------------


class Page:
    """An HTML page built section by section; figures become embedded PNGs."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.images: dict[str, bytes] = {}

    def h1(self, text: str) -> None:
        self.parts.append(f"<h1>{html.escape(text)}</h1>")

    def h2(self, text: str, anchor: str | None = None) -> None:
        aid = f' id="{anchor}"' if anchor else ""
        self.parts.append(f"<h2{aid}>{html.escape(text)}</h2>")

    def p(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def items(self, lines: list[str]) -> None:
        if lines:
            self.parts.append(
                "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>"
            )

    def table(
        self,
        head: list[str],
        rows: list[list[str]],
        row_classes: list[str | None] | None = None,
        cell_classes: list[list[str | None]] | None = None,
        left: int = 1,
    ) -> None:
        """``left``: how many leading columns hold text (left-aligned)."""
        out = [f'<div class="scroll"><table class="left{left}"><thead><tr>']
        out += [f"<th>{html.escape(h)}</th>" for h in head]
        out.append("</tr></thead><tbody>")
        for i, row in enumerate(rows):
            rc = row_classes[i] if row_classes else None
            out.append(f'<tr class="{rc}">' if rc else "<tr>")
            for j, cell in enumerate(row):
                cc = cell_classes[i][j] if cell_classes else None
                c = f' class="{cc}"' if cc else ""
                out.append(f"<td{c}>{html.escape(cell)}</td>")
            out.append("</tr>")
        out.append("</tbody></table></div>")
        self.parts.append("".join(out))

    def figure(self, name: str, fig: Any, caption: str = "") -> bool:
        if fig is None:
            return False
        from polytask.evaluation.plots import png_bytes

        data = png_bytes(fig)
        self.images[f"{name}.png"] = data
        b64 = base64.b64encode(data).decode("ascii")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(
            f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
            f"{cap}</figure>"
        )
        return True

    def html(self) -> str:
        body = "\n".join(self.parts)
        stamp = time.strftime("%Y-%m-%d %H:%M")
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head>"
            f"<body><main>\n{body}\n"
            f'<p class="meta">Written by polytask on {stamp}.</p></main></body></html>\n'
        )


# -- shared sections ----------------------------------------------------------------------------


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _conflict_section(
    page: Page, histories: list[list[dict[str, Any]]], names: list[str], who: str
) -> None:
    from polytask.evaluation.conflict import cosine_matrix, summarise_many
    from polytask.evaluation.plots import cosine_over_training, heatmap

    pairs = summarise_many([h for h in histories if h])
    if not pairs:
        return
    page.h2("Gradient conflict", "conflict")
    page.p(
        f"Cosine similarity of the task gradients, logged every few steps while training "
        f"{who}. Below 0 the tasks pull the shared layers in opposite directions. "
        "Trend: change of the cosine from the start to the end of training (least-squares "
        "slope)."
    )
    rows = [
        [
            p.pair.replace("~", " / "),
            f"{p.mean:+.3f}",
            f"{p.negative_share * 100:.0f}%",
            f"{p.trend:+.3f}",
            p.label,
        ]
        for p in pairs
    ]
    classes = [[None, None, None, None, "label bad" if p.mean < 0 else "label"] for p in pairs]
    page.table(["pair", "mean cosine", "epochs < 0", "trend", ""], rows, cell_classes=classes)
    fig = heatmap(
        cosine_matrix(names, pairs),
        names,
        "Mean gradient cosine",
        limit=1.0,
        cbar_label="cosine",
    )
    over = cosine_over_training(histories[0])
    page.parts.append('<div class="row">')
    page.figure("conflict_heatmap", fig)
    page.parts.append("</div>")
    page.figure("conflict_over_training", over)


def _affinity_section(page: Page, aff: dict[str, Any] | None, who: str) -> None:
    from polytask.evaluation.plots import heatmap

    if not aff:
        return
    names = aff["tasks"]
    matrix = np.array([[np.nan if v is None else v for v in row] for row in aff["matrix"]])
    page.h2("Task affinity", "affinity")
    page.p(
        f"Lookahead affinity (Fifty et al. 2021) measured every {aff.get('every')} steps "
        f"while training {who}: Z[i→j] = 1 − L_j(after one plain gradient step on task i "
        "alone) / L_j(before), on the same batch. Row i, column j: how a step for task i "
        "changes task j's loss; > 0 (blue) means i helps j, < 0 (red) that it hurts j. "
        "The size scales with the learning rate; compare entries with each other. The "
        "diagonal (a task's step on its own loss) is grey and outside the colour scale; in "
        "brackets, an entry as a share of its column's diagonal (how much a step for i "
        "does for j, next to a step for j itself). The colours reach at least ±10% of "
        "the mean diagonal, so weak effects stay pale."
    )
    share = aff.get("share")
    page.p(
        f"Cost: {aff.get('seconds', 0):.2f}s of measuring"
        + (f", {share * 100:.1f}% of the training time." if share is not None else "."),
        "meta",
    )
    diag = np.diag(matrix)
    strength = relative_strength(matrix)
    notes = [
        [
            ""
            if i == j or not (np.isfinite(matrix[i, j]) and diag[j] > 0)
            else f"({100 * matrix[i, j] / diag[j]:+.0f}%)"
            for j in range(len(names))
        ]
        for i in range(len(names))
    ]
    fig = heatmap(
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
    page.figure("affinity_heatmap", fig)
    groupings = aff.get("groupings") or []
    if groupings and strength is not None and strength < WEAK:
        page.p(
            f"The effects between tasks are weak: at most {strength * 100:.1f}% of a task's "
            "effect on itself. The grouping below follows them, but they say little about "
            "whether to train the tasks together: the comparison's verdicts do.",
            "meta",
        )
    if groupings:
        page.p(
            "Recommended grouping into G models: the partition that maximises the total "
            "affinity within groups (each task counts the mean affinity onto it from its "
            "group's other tasks; a task alone counts 0). Exhaustive search."
        )
        page.table(
            ["models", "groups", "total affinity"],
            [
                [
                    str(g["models"]),
                    " | ".join(" + ".join(x) for x in g["groups"]),
                    f"{g['score']:+.3g}",
                ]
                for g in groupings
            ],
            left=2,
        )


def _affinity_of_history(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    from polytask.evaluation.affinity import affinity_cost, affinity_over_training
    from polytask.evaluation.grouping import MAX_TASKS, recommend_groups

    aff = affinity_over_training(history)
    if aff is None:
        return None
    names, matrix, _ = aff
    spent, share = affinity_cost(history)
    every = next((r["affinity"].get("every") for r in history if r.get("affinity")), None)
    groupings = []
    if len(names) <= MAX_TASKS:
        for g in range(1, min(len(names), 4) + 1):
            best = recommend_groups(names, matrix, g)
            groupings.append({"models": g, "groups": best.groups, "score": best.score})
    return {
        "tasks": names,
        "matrix": [[None if math.isnan(x) else float(x) for x in row] for row in matrix],
        "seconds": spent,
        "share": share,
        "every": every,
        "groupings": groupings,
    }


def _curves(
    page: Page,
    history: list[dict[str, Any]],
    headline: dict[str, dict[str, bool]],
    prefix: str = "",
) -> None:
    from polytask.evaluation.plots import learning_curves, task_weights

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
    from polytask.config import load_yaml, parse_config
    from polytask.evaluation.delta_m import headline_of
    from polytask.model import build_tasks

    run_dir.check_run(folder)
    cfg = parse_config(
        load_yaml((folder / run_dir.CONFIG).read_text(encoding="utf-8")),
        where=str(folder / run_dir.CONFIG),
    )
    tasks = build_tasks(cfg)
    headline = headline_of(tasks)
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
    if history:
        page.h2("Learning curves", "curves")
        _curves(page, history, headline)
    names = [t.name for t in tasks]
    if len(names) > 1:
        _conflict_section(page, [history], names, "this run")
        _affinity_section(page, _affinity_of_history(history), "this run")
    return page


# -- a comparison -------------------------------------------------------------------------------


def compare_page(folder: Path) -> Page:
    from polytask.evaluation.compare import Variant, run_path
    from polytask.evaluation.comparison import analysis_variant, load_spec, summarise_comparison
    from polytask.evaluation.plots import delta_m_bars
    from polytask.evaluation.tables import (
        VERDICT_HEADER,
        caption,
        header,
        table_rows,
        verdict_lines,
    )

    c = summarise_comparison(folder)
    spec = load_spec(folder)
    variants = [
        Variant(**{k: v[k] for k in ("kind", "method", "architecture", "task")})
        for v in spec["variants"]
    ]
    page = Page(f"polytask comparison {folder.name}")
    page.h1("Does sharing help?")
    page.p(
        f"Comparison {folder.name}: tasks {', '.join(c.tasks)}; {len(c.seeds)} seed(s); "
        f"methods {', '.join(spec['methods'])}; architectures {', '.join(spec['architectures'])}.",
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
    if c.verdicts:
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
    who = c.affinity["variant"] if c.affinity else None
    _affinity_section(page, c.affinity, who or "")
    v = analysis_variant(c, variants)
    if v is not None:
        histories = [run_dir.read_history(run_path(folder, v, s)) for s in c.seeds]
        histories = [h for h in histories if h]
        if histories:
            _conflict_section(page, histories, c.tasks, f"{v.name} (all seeds)")
    chosen = next((x for x in variants if x.kind == "multi" and x.name == c.chosen), None)
    if chosen is not None:
        row = c.row(chosen.name)
        seed = row.seeds[0] if row and row.seeds else None
        history = run_dir.read_history(run_path(folder, chosen, seed)) if seed is not None else []
        if history:
            page.h2(f"Learning curves: {chosen.name}, seed {seed}", "curves")
            _curves(page, history, c.headline, prefix="chosen_")
    if c.failures:
        page.h2("Failed runs", "failures")
        page.items(
            [
                f"{f['variant']}{' (' + f['model'] + ')' if f.get('model') else ''}, "
                f"seed {f['seed']}: {f['error']}"
                for f in c.failures
            ]
        )
    for note in c.notes:
        page.p(f"Note: {note}", "meta")
    return page


# -- entry point ---------------------------------------------------------------------------------


def is_comparison(folder: Path) -> bool:
    from polytask.evaluation.compare import SPEC

    return (folder / SPEC).is_file()


def write_report(
    source: str | Path,
    output: str | Path | None = None,
    overwrite: bool = False,
    plots: bool = True,
) -> Path:
    """Write the report of a run or comparison folder; returns the HTML file's path.
    Without ``output`` it is ``SOURCE/report.html`` (replaced if there); an ``output``
    that exists is replaced only with ``overwrite``. With ``plots`` the PNG files also go
    to the folder beside it (``report_plots/``); the HTML holds them either way."""
    src = Path(source)
    if not src.is_dir():
        raise PolytaskError(
            f"'{src}' is not a folder; pass a run directory (train --out) or a comparison "
            "directory (compare --out)"
        )
    out = Path(output) if output is not None else src / REPORT
    if output is not None and out.exists() and not overwrite:
        raise PolytaskError(f"'{out}' already exists; pass --overwrite to replace it")
    if out.exists() and out.is_dir():
        raise PolytaskError(f"'{out}' is a folder; --output names the HTML file to write")
    page = compare_page(src) if is_comparison(src) else run_page(src)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if plots:
            _replace_folder(plots_dir(out), page.images)
        write_text_atomic(out, page.html())
    except OSError as err:
        raise PolytaskError(
            f"cannot write the report '{out}' ({err.strerror or err}); choose a writable --output"
        ) from None
    return out
