"""The report's figures (matplotlib, Agg backend, imported only when a figure is drawn).

Every function takes plain data (history records, matrices, a comparison) and returns a
matplotlib Figure, or None when there is nothing to draw.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from polytask.evaluation.summary import Comparison

TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#d62728"


def _plt() -> Any:
    """pyplot on the Agg backend. Imported here, not at the top, because choosing the
    backend is process-wide: importing polytask must not switch a notebook's backend;
    drawing a report's figure may."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "font.size": 10,
        }
    )
    return plt


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG; the figure is closed afterwards. The box grows to hold every
    label: a heatmap's equal aspect leaves constrained layout no room, and a long task
    name on its y axis was cut ("ody_mass_g")."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)
    return buf.getvalue()


def _integer_epochs(ax: Any) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _series(history: list[dict[str, Any]], *keys: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in history:
        node: Any = r
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
            if node is None:
                break
        if node is not None and isinstance(node, (int, float)) and math.isfinite(node):
            xs.append(int(r["epoch"]))
            ys.append(float(node))
    return xs, ys


def learning_curves(
    history: list[dict[str, Any]], headline: dict[str, dict[str, bool]]
) -> Figure | None:
    """Per task (one row each): train and validation loss, and the validation headline
    metric(s), with the best epoch marked."""
    if not history:
        return None
    plt = _plt()
    tasks = list(headline)
    fig, axes = plt.subplots(
        len(tasks), 2, figsize=(11, 2.6 * len(tasks)), squeeze=False, layout="constrained"
    )
    best = [int(r["epoch"]) for r in history if r.get("best")]
    best_epoch = best[-1] if best else None
    for row, task in zip(axes, tasks, strict=True):
        ax_loss, ax_metric = row
        for split, color in (("train", TRAIN_COLOR), ("validation", VAL_COLOR)):
            x, y = _series(history, split, "loss", task)
            if x:
                ax_loss.plot(x, y, color=color, label=split, marker="." if len(x) < 30 else None)
        ax_loss.set_title(f"{task}: loss")
        ax_loss.set_xlabel("epoch")
        ax_loss.legend(loc="upper right", fontsize=8)
        drawn = False
        for metric, higher in headline[task].items():
            x, y = _series(history, "validation", "metrics", task, metric)
            if x:
                arrow = "higher is better" if higher else "lower is better"
                ax_metric.plot(
                    x,
                    y,
                    color=VAL_COLOR,
                    marker="." if len(x) < 30 else None,
                    label=f"validation {metric} ({arrow})",
                )
                drawn = True
        ax_metric.set_title(f"{task}: {', '.join(headline[task])} (validation)")
        ax_metric.set_xlabel("epoch")
        if drawn:
            ax_metric.legend(loc="best", fontsize=8)
        for ax in row:
            _integer_epochs(ax)
            if best_epoch is not None:
                ax.axvline(best_epoch, color="#888", linestyle=":", linewidth=1)
    fig.suptitle("Learning curves (dotted line: the epoch kept, chosen on validation)")
    return fig


def task_weights(history: list[dict[str, Any]]) -> Figure | None:
    """The balancer's task weights per epoch (mean over the logged steps)."""
    names: list[str] = []
    for r in history:
        for n in r.get("weights") or {}:
            if n not in names:
                names.append(n)
    values = [v for n in names for v in _series(history, "weights", n)[1]]
    if not values or max(values) - min(values) < 1e-9:
        return None  # constant (e.g. ew): nothing to see
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 3.2), layout="constrained")
    styles = ["-", "--", "-.", ":"]
    for k, n in enumerate(names):
        x, y = _series(history, "weights", n)
        if x:
            ax.plot(x, y, label=n, linestyle=styles[k % 4], marker="." if len(x) < 30 else None)
    _integer_epochs(ax)
    ax.set_title("Task weights over training")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weight")
    ax.legend(loc="best", fontsize=8)
    return fig


def heatmap(
    matrix: np.ndarray,
    names: list[str],
    title: str,
    *,
    row_label: str = "",
    col_label: str = "",
    limit: float | None = None,
    cbar_label: str = "",
    muted_diagonal: bool = False,
    rescale: bool = False,
    floor: float = 0.0,
    notes: list[list[str]] | None = None,
) -> Figure:
    """A diverging heatmap centred on 0 (blue > 0, red < 0) with the values written in.

    ``muted_diagonal``: the diagonal is shown in grey and left out of the colour scale
    (for affinity, where a task's effect on itself dwarfs the rest). ``rescale``: values
    are written as multiples of a power of ten, named in the title. ``floor``: the
    colour scale reaches at least ±floor (tiny values stay pale). ``notes``: a second
    line of text per cell."""
    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    n = len(names)
    coloured = m.copy()
    if muted_diagonal:
        np.fill_diagonal(coloured, np.nan)
    vmax, power = _colour_scale(coloured, limit, floor, rescale)
    if power:
        title = f"{title}  (values × 1e{power})"
    size = max(3.8, 0.75 * n + 2.2)
    fig, ax = plt.subplots(figsize=(size + 1.0, size), layout="constrained")
    ax.grid(False)
    image = ax.imshow(np.ma.masked_invalid(coloured), cmap="RdBu", vmin=-vmax, vmax=vmax)
    ax.set_xticks(range(n), names, rotation=30, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    _write_cells(plt, ax, m, coloured, vmax, power, muted_diagonal, notes)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if cbar_label:
        bar.set_label(cbar_label)
    ax.set_title(title)
    return fig


def _colour_scale(
    coloured: np.ndarray, limit: float | None, floor: float, rescale: bool
) -> tuple[float, int]:
    """(the colour scale's reach, the power of ten the written values are divided by)."""
    finite = np.abs(coloured[np.isfinite(coloured)])
    vmax = limit if limit is not None else (float(finite.max()) if finite.size else 1.0)
    vmax = max(vmax, floor) or 1.0
    power = 0
    if rescale and finite.size and finite.max() > 0:
        power = int(np.floor(np.log10(finite.max())))
        if -2 <= power <= 1:
            power = 0
    return vmax, power


def _write_cells(
    plt: Any,
    ax: Any,
    m: np.ndarray,
    coloured: np.ndarray,
    vmax: float,
    power: int,
    muted_diagonal: bool,
    notes: list[list[str]] | None,
) -> None:
    """Each cell's value (and note) in a colour readable on the cell's own colour."""
    for i in range(len(m)):
        for j in range(len(m)):
            v = m[i, j]
            if muted_diagonal and i == j:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color="#e6e6e6"))
            text = "n/a" if not math.isfinite(v) else f"{v / 10.0**power:.2f}"
            if notes is not None and notes[i][j]:
                text = f"{text}\n{notes[i][j]}"
            dark = math.isfinite(coloured[i, j]) and abs(coloured[i, j]) > 0.6 * vmax
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=9,
                color="white" if dark else ("#666" if muted_diagonal and i == j else "black"),
            )


def cosine_over_training(series: dict[str, tuple[list[int], list[float]]]) -> Figure | None:
    """Each pair's mean gradient cosine per epoch, from ``{pair: (epochs, cosines)}``."""
    if not series or max(len(v) for _, v in series.values()) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 3.2), layout="constrained")
    for pair, (epochs, values) in series.items():
        ax.plot(
            epochs,
            values,
            label=pair.replace("~", " / "),
            marker="." if len(values) < 30 else None,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    _integer_epochs(ax)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(
        "Gradient cosine per pair of tasks (below 0: the tasks pull the shared layers apart)"
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("cosine")
    ax.legend(loc="best", fontsize=8)
    return fig


def delta_m_bars(c: Comparison) -> Figure | None:
    """Δm% per multi-task variant, with its seed-to-seed std; the chosen one highlighted."""
    rows = [r for r in c.rows if r.kind == "multi" and r.delta_m is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(rows) + 1.6), layout="constrained")
    y = np.arange(len(rows))
    values = [r.delta_m for r in rows if r.delta_m is not None]
    errors = [r.delta_m_std or 0.0 for r in rows]
    colors = ["#2ca02c" if v < 0 else "#d62728" for v in values]
    bars = ax.barh(y, values, xerr=errors, color=colors, alpha=0.85, capsize=3)
    for bar, r in zip(bars, rows, strict=True):
        if r.name == c.chosen:
            bar.set_edgecolor("black")
            bar.set_linewidth(2)
    ax.set_yticks(y, [f"{r.name}{'  (chosen)' if r.name == c.chosen else ''}" for r in rows])
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=1)
    ax.set_xlabel("Δm % vs single-task on test (lower is better; < 0: sharing helps)")
    ax.set_title("Δm per multi-task variant (error bars: std over seeds)")
    return fig
