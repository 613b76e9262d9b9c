"""Figures of the report's trust sections: reliability diagrams (calibration) and
permutation importance bars. Plain data in (``calibration.json``, ``importance.json``),
a matplotlib Figure out, or None when there is nothing to draw."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from polytask.evaluation.plots import TRAIN_COLOR, VAL_COLOR, _plt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: importance bars drawn per task at most (the largest mean drops)
TOP_GROUPS = 10


def _points(bins: dict[str, Any]) -> tuple[list[float], list[float], list[int]]:
    xs, ys, ns = [], [], []
    for c, f, n in zip(bins["confidence"], bins["frequency"], bins["count"], strict=True):
        if c is not None and f is not None:
            xs.append(c)
            ys.append(f)
            ns.append(n)
    return xs, ys, ns


def reliability_diagram(evidence: dict[str, dict[str, Any]], split: str) -> Figure | None:
    """One panel per task: observed frequency against mean confidence per bin, without
    (blue) and with (red) the temperature; marker area follows the bin's rows. Where the
    temperature was kept at 1 the two are the same: one curve (blue), said in its label."""
    tasks = [t for t, e in evidence.items() if e.get("before") and e.get("after")]
    if not tasks:
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(4.2 * len(tasks) + 0.6, 4.2), squeeze=False, layout="constrained"
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        ax.plot([0, 1], [0, 1], color="#888", linestyle=":", linewidth=1, label="perfect")
        same = evidence[task]["before"] == evidence[task]["after"]
        curves = [("before", TRAIN_COLOR, "T = 1 kept" if same else "before")]
        curves += [] if same else [("after", VAL_COLOR, "with temperature")]
        for key, color, label in curves:
            bins = evidence[task][key]
            xs, ys, ns = _points(bins)
            total = max(sum(ns), 1)
            ax.plot(xs, ys, color=color, linewidth=1.2, alpha=0.8)
            ax.scatter(xs, ys, s=[12 + 400 * n / total for n in ns], color=color, alpha=0.7)
            ax.plot([], [], color=color, marker="o", label=f"{label}: ECE {bins['ece']:.3f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"{task} ({split})")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Reliability: 15 equal-width bins of the confidence (area: rows in the bin)")
    return fig


def importance_bars(task: str, entry: dict[str, Any]) -> Figure | None:
    """One task's largest mean metric drops, with the spread over the shuffles."""
    groups = [(g, v) for g, v in entry["groups"].items() if v["mean"] is not None]
    if not groups:
        return None
    groups = groups[:TOP_GROUPS]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.4, 0.32 * len(groups) + 1.3), layout="constrained")
    y = np.arange(len(groups))
    means = [v["mean"] for _, v in groups]
    errors = [v["std"] or 0.0 for _, v in groups]
    colors = [VAL_COLOR if m > 0 else "#999999" for m in means]
    ax.barh(y, means, xerr=errors, color=colors, alpha=0.85, capsize=2)
    ax.set_yticks(y, [g for g, _ in groups])
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"drop of {entry['metric']} when shuffled")
    ax.set_title(task, fontsize=10)
    return fig
