"""The run report's section on ``balancing: auto``: the race that chose the method
(race.json, written by :mod:`polytask.auto`), round by round, and a chart of the scores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polytask import run_dir
from polytask.evaluation.html import Page
from polytask.evaluation.plots import _plt

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _label(result: dict[str, Any]) -> str:
    b = result["balancing"]
    weights = b.get("weights")
    if weights:
        return f"{result['entrant']} ({', '.join(f'{t}={w:.3g}' for t, w in weights.items())})"
    return str(result["entrant"])


def race_figure(race: dict[str, Any]) -> Figure | None:
    """Each round's Δm per entrant (lower is better), rounds side by side."""
    rounds = race.get("rounds") or []
    if not rounds:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(rounds), figsize=(4.2 * len(rounds), 3.2), squeeze=False)
    for ax, rnd in zip(axes[0], rounds, strict=True):
        res = rnd["results"]
        names = [r["entrant"] for r in res]
        scores = [r["score"] if math.isfinite(r["score"]) else 0.0 for r in res]
        best = min(range(len(res)), key=lambda i: res[i]["score"])
        colours = ["#2e7d32" if i == best else "#90a4ae" for i in range(len(res))]
        ax.barh(names, scores, color=colours)
        ax.invert_yaxis()
        ax.axvline(0, color="#333", lw=0.8)
        ax.set_title(f"{rnd['epochs']} epochs, {len(res)} entrants", fontsize=10)
        ax.set_xlabel("Δm% vs round median (lower is better)", fontsize=9)
    fig.tight_layout()
    return fig


def race_section(page: Page, folder: Path) -> None:
    """The race's section, if the run has one."""
    path = folder / run_dir.RACE
    if not path.is_file():
        return
    race = json.loads(path.read_text(encoding="utf-8"))
    winner = race["winner"]
    page.h2("Balancing: the auto race", "race")
    page.p(
        f"balancing: auto raced {len(race['rounds'][0]['results'])} entrants by successive "
        f"halving on the validation split ({race['budget_epochs']} entrant-epochs, "
        f"{race['seconds']:.1f}s); the winner, {winner['entrant']} "
        f"({json.dumps(winner['balancing'])}), was then trained to the end. "
        f"Score: {race['score']}."
    )
    rows = []
    for n, rnd in enumerate(race["rounds"], 1):
        for r in sorted(rnd["results"], key=lambda r: r["score"]):
            rows.append([str(n), _label(r), str(rnd["epochs"]), f"{r['score']:+.2f}", *_metrics(r)])
    page.table(["round", "entrant", "epochs", "Δm%", "validation headline metrics"], rows, left=2)
    page.figure("race", race_figure(race), "Δm% of each entrant per round; green: kept best")


def _metrics(result: dict[str, Any]) -> list[str]:
    parts = []
    for task, metrics in result["validation"].items():
        shown = ", ".join(
            f"{m}={v:.4g}" for m, v in metrics.items() if m != "n" and isinstance(v, float)
        )
        parts.append(f"{task}: {shown}")
    return ["; ".join(parts)]
