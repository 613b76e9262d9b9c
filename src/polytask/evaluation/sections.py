"""What each section of a comparison or run shows, as plain cells and lines, written once:
the HTML report, the Markdown file and the terminal each only lay them out."""

from __future__ import annotations

from typing import Any

from polytask.analysis.conflict import PairConflict


def conflict_cells(pairs: list[PairConflict]) -> list[list[str]]:
    """One row per pair: pair, mean cosine, share of epochs below 0, trend, label."""
    return [
        [
            p.pair.replace("~", " / "),
            f"{p.mean:+.3f}",
            f"{p.negative_share * 100:.0f}%",
            f"{p.trend:+.3f}",
            p.label,
        ]
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
