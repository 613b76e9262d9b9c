"""What each section of a comparison or run shows, as plain cells and lines, written once:
the HTML report, the Markdown file and the terminal each only lay them out."""

from __future__ import annotations

import math
from typing import Any

from polytask.analysis.conflict import (
    ALIGNED_MARGIN,
    CONFLICT_MARGIN,
    MIN_MEASUREMENTS,
    PairConflict,
)
from polytask.evaluation.summary import Comparison, Row

#: the header of :func:`conflict_cells`
CONFLICT_HEADER = [
    "pair",
    "mean cosine",
    "95% interval",
    "measurements",
    "epochs < 0",
    "trend over training",
    "",
]

#: the rule behind the labels, said wherever they are shown
CONFLICT_RULE = (
    f"A pair is called conflicting only with at least {MIN_MEASUREMENTS} measurements and "
    f"the whole 95% interval of its mean cosine below -{CONFLICT_MARGIN}; near orthogonal "
    f"within ±{ALIGNED_MARGIN}; often conflicting with a quarter of at least 4 epochs below "
    f"-{CONFLICT_MARGIN}; aligned above +{ALIGNED_MARGIN}; otherwise inconclusive."
)


def conflict_cells(pairs: list[PairConflict]) -> list[list[str]]:
    """One row per pair: pair, mean cosine, its 95% interval, how many measurements over
    how many epochs, share of epochs below 0 (of how many), trend, label."""
    return [
        [
            p.pair.replace("~", " / "),
            f"{p.mean:+.3f}",
            f"[{p.low:+.2f}, {p.high:+.2f}]" if math.isfinite(p.low) else "-",
            f"{p.measurements} over {p.epochs} epoch{'s' if p.epochs != 1 else ''}",
            f"{p.negative_share * 100:.0f}% of {p.epochs}",
            f"{p.trend:+.3f}",
            p.label,
        ]
        for p in pairs
    ]


def conflict_lines(pairs: list[PairConflict]) -> list[str]:
    """For the terminal: 'a / b: conflicting, mean cosine -0.21 (24 measurements ...)'."""
    return [
        f"{p.pair.replace('~', ' / ')}: {p.label}, mean cosine {p.mean:+.3f} ({p.evidence})"
        for p in pairs
    ]


def failure_lines(failures: list[dict[str, Any]]) -> list[str]:
    """One line per failed run: variant (the task's model), seed and the error."""
    return [
        f"{f['variant']}{' (' + f['model'] + ')' if f.get('model') else ''}, "
        f"seed {f['seed']}: {f['error']}"
        for f in failures
    ]


def cost_text(seconds: float, share: float | None, of: str) -> str:
    """What measuring affinity cost: "Cost: 1.23s of measuring, 12.3% of OF."."""
    return f"Cost: {seconds:.2f}s of measuring" + (
        f", {share * 100:.1f}% of {of}." if share is not None else "."
    )


# -- the comparison table and the verdicts -------------------------------------------------


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
