"""The run report's trust sections, from the run's own files: calibration (temperature,
ECE and Brier before and after, a reliability diagram) and intervals from
``calibration.json``, which training writes; permutation importance from
``importance.json``, which ``polytask explain`` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polytask import run_dir
from polytask.evaluation.html import Page
from polytask.evaluation.trust_plots import importance_bars, reliability_diagram


def _f(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def trust_sections(page: Page, folder: Path) -> None:
    """The calibration, intervals and importance sections the run has files for."""
    fitted = run_dir.read_optional(folder / run_dir.CALIBRATION)
    tasks = fitted.get("tasks", {}) if isinstance(fitted, dict) else {}
    split = fitted.get("evidence_on", "test") if tasks else "test"
    _calibration(page, {t: v for t, v in tasks.items() if v.get("kind") == "temperature"}, split)
    _intervals(page, {t: v for t, v in tasks.items() if v.get("kind") == "intervals"}, split)
    _importance(page, run_dir.read_optional(folder / run_dir.IMPORTANCE))


def _calibration(page: Page, tasks: dict[str, Any], split: str) -> None:
    if not tasks:
        return
    page.h2("Calibration", "calibration")
    page.p(
        "Each class task's logits are divided by one temperature T, fitted after training "
        "on the validation split by L-BFGS on the negative log-likelihood (T > 1 softens "
        "over-confident probabilities; the predicted class never changes). T stays 1 "
        "where a temperature fitted on one half of the validation rows does not lower the "
        "other half's NLL: there, it would fit noise. Predictions "
        "use it (predict --no-calibration leaves it out). ECE: expected calibration error "
        f"over 15 equal-width bins of the confidence; Brier score; both on the {split} "
        "split, lower is better."
    )
    rows = []
    for name, t in tasks.items():
        ev = t.get("evidence") or {}
        before, after = ev.get("before", {}), ev.get("after", {})
        rows.append(
            [
                name,
                _f(t.get("temperature"), ".3f"),
                f"{_f(t.get('nll_before'))} → {_f(t.get('nll_after'))}",
                f"{_f(before.get('ece'))} → {_f(after.get('ece'))}",
                f"{_f(before.get('brier'))} → {_f(after.get('brier'))}",
                str(ev.get("n", "-")),
            ]
        )
    head = ["task", "T", "NLL (validation)", f"ECE ({split})", f"Brier ({split})", "rows"]
    page.table(head, rows)
    evidence = {n: t.get("evidence") or {} for n, t in tasks.items()}
    page.figure("reliability", reliability_diagram(evidence, split))


def _intervals(page: Page, tasks: dict[str, Any], split: str) -> None:
    if not tasks:
        return
    page.h2("Prediction intervals", "intervals")
    page.p(
        "Split-conformal intervals: TASK_lower and TASK_upper are the prediction ± the "
        "⌈(n+1)·coverage⌉-th smallest absolute residual of the n validation rows, in the "
        "label's units (clipped at 0 for counts and log-trained targets). For rows like "
        f"the validation rows they cover the label at least that often; below, what they "
        f"covered on the {split} split and their mean width."
    )
    rows = [
        [
            name,
            f"{t['coverage']:.0%}" if t.get("coverage") is not None else "-",
            _f(t.get("radius")),
            str(t.get("n", "-")),
            _f((t.get("evidence") or {}).get("coverage"), ".3f"),
            _f((t.get("evidence") or {}).get("interval_width")),
            str((t.get("evidence") or {}).get("n", "-")),
        ]
        for name, t in tasks.items()
    ]
    head = ["task", "target coverage", "half-width", "validation rows"]
    page.table([*head, f"coverage ({split})", "mean width", "rows"], rows)


def _importance(page: Page, result: Any) -> None:
    if not isinstance(result, dict) or not result.get("tasks"):
        return
    page.h2("What drove each task: permutation importance", "importance")
    page.p(
        "Each feature column shuffled across the rows in turn, every task scored again "
        "with its headline metric: the bar is the metric's mean drop over "
        f"{result.get('repeats')} shuffles (error bar: their standard deviation), on "
        f"{result.get('rows')} rows ({result.get('split', 'all')} of "
        f"{result.get('data') or 'the data given'}). Larger: the task leans on it more; "
        "near 0: the task ignores it. polytask explain wrote it."
    )
    page.parts.append('<div class="row">')
    for task, entry in result["tasks"].items():
        page.figure(f"importance_{task}", importance_bars(task, entry))
    page.parts.append("</div>")
