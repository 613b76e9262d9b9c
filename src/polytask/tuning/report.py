"""The study's report page: optimisation history, parameter importances and, for a
multi-objective study, the Pareto front (each pair of objectives), drawn with matplotlib."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polytask.evaluation.html import REPORT, Page
from polytask.evaluation.plots import _plt
from polytask.io import write_text
from polytask.tuning.objective import Objective
from polytask.tuning.outputs import done_trials

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _names(objective: Objective) -> list[str]:
    return [objective.kind] if not objective.multi else [f"{t}.{m}" for t, m in objective.targets]


def history_figure(study: Any, objective: Objective) -> Figure | None:
    """Each complete trial's value and the best so far, one panel per objective."""
    done = done_trials(study)
    if not done:
        return None
    plt = _plt()
    names = _names(objective)
    size = (7, 3.4) if len(names) == 1 else (4.2 * len(names), 3.4)
    fig, axes = plt.subplots(1, len(names), figsize=size, squeeze=False)
    xs = [t.number for t in done]
    pruned = [t.number for t in study.trials if t.state.name == "PRUNED"]
    for i, ax in enumerate(axes[0]):
        ys = [t.values[i] for t in done]
        ax.scatter(xs, ys, s=16, color="#1f77b4", label="complete trial")
        pick = min if objective.directions[i] == "minimize" else max
        best = list(itertools.accumulate(ys, pick))
        ax.step(xs, best, where="post", color="#d62728", label="best so far")
        for j, x in enumerate(pruned):
            ax.axvline(x, color="#bbb", lw=0.6, label="pruned" if j == 0 else None)
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{names[i]} ({objective.directions[i][:3]})", fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def importances(study: Any, objective: Objective) -> dict[str, dict[str, float]]:
    """{objective name: {parameter: importance}} by Optuna's default evaluator (empty
    with too few trials)."""
    import optuna

    names = ["value"] if not objective.multi else _names(objective)
    out: dict[str, dict[str, float]] = {}
    if len(done_trials(study)) < 3:
        return out
    for i, name in enumerate(names):
        try:  # warns where a regime has few trials: the figure says how many trials
            warnings.simplefilter("ignore", UserWarning)
            target = (lambda t, i=i: t.values[i]) if objective.multi else None
            imp = optuna.importance.get_param_importances(study, target=target)
        except (ValueError, RuntimeError):
            continue
        out[name] = {k: round(float(v), 4) for k, v in imp.items()}
    return out


def importance_figure(imps: dict[str, dict[str, float]]) -> Figure | None:
    if not imps:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(imps), figsize=(4.5 * len(imps), 3.6), squeeze=False)
    for ax, (name, imp) in zip(axes[0], imps.items(), strict=True):
        keys = list(imp)[:10]
        ax.barh(keys, [imp[k] for k in keys], color="#4a78c2")
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def pareto_figure(study: Any, objective: Objective) -> Figure | None:
    done = done_trials(study)
    if not objective.multi or not done:
        return None
    plt = _plt()
    front = {t.number for t in study.best_trials}
    names = _names(objective)
    pairs = list(itertools.combinations(range(len(names)), 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs, strict=True):
        for on, colour, label in ((False, "#90a4ae", "dominated"), (True, "#d62728", "front")):
            pts = [t for t in done if (t.number in front) == on]
            ax.scatter([t.values[i] for t in pts], [t.values[j] for t in pts], s=18,
                       color=colour, label=label)  # fmt: skip
        ax.set_xlabel(f"{names[i]} ({objective.directions[i][:3]})", fontsize=9)
        ax.set_ylabel(f"{names[j]} ({objective.directions[j][:3]})", fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_study_report(out: Path, study: Any, objective: Objective, best: Any) -> Path:
    page = Page(f"polytask tune {out.name}")
    page.h1(f"Tuning report: {out.name}")
    states = [t.state.name for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    page.p(f"{len(states)} trials ({counts}); objective {objective.kind} on validation "
           f"({', '.join(objective.directions)}).", "meta")  # fmt: skip
    page.h2("Best trial", "best")
    page.p(f"Trial {best.number}: values {best.values}; its config is best.yaml "
           "(polytask train --config best.yaml trains it as is).")  # fmt: skip
    page.table(["parameter", "value"], [[k, json.dumps(v)] for k, v in best.params.items()])
    page.h2("Optimisation history", "history")
    page.figure(
        "history",
        history_figure(study, objective),
        "each complete trial's value (per objective); red: the best so far",
    )
    if objective.multi:
        page.h2("Pareto front", "pareto")
        page.p(f"{len(study.best_trials)} trials on the front (no trial is better on every "
               "task's headline metric).")  # fmt: skip
        page.figure("pareto", pareto_figure(study, objective), "red: the Pareto front")
    page.h2("Parameter importances", "importances")
    imps = importances(study, objective)
    if not page.figure(
        "importances", importance_figure(imps), "importance (Optuna's default evaluator)"
    ):
        page.p("Too few complete trials to estimate importances.", "muted")
    path = out / REPORT
    write_text(path, page.html())
    return path
