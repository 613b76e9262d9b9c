"""What a run is about to train on, said before the first epoch: the rows of each split,
the type each feature was inferred to be, and each task with its labelled rows (and
classes), so that a wrong split, a column read as text or a task with few labels shows
at once instead of in run.json afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: feature columns listed per type before the rest is counted ("... and 12 more")
SHOWN_PER_TYPE = 8


def _features(types: Mapping[str, str]) -> list[str]:
    by_type: dict[str, list[str]] = {}
    for column, kind in types.items():
        by_type.setdefault(kind, []).append(column)
    lines = []
    for kind, columns in by_type.items():
        shown = ", ".join(columns[:SHOWN_PER_TYPE])
        more = f" and {len(columns) - SHOWN_PER_TYPE} more" if len(columns) > SHOWN_PER_TYPE else ""
        lines.append(f"  {kind} ({len(columns)}): {shown}{more}")
    return lines


def _labelled(table: Any, i: int) -> int | None:
    """Rows of ``table`` with a label for task ``i`` (None when the table can't say)."""
    masks = getattr(table, "masks", None)
    if table is None or masks is None:
        return None
    mask = masks[i]
    return int(mask.reshape(mask.shape[0], -1).any(dim=1).sum())


def start_lines(
    tasks: list[Any], rows: Mapping[str, int], types: Mapping[str, str], train: Any
) -> list[str]:
    """The summary as plain lines (one source)."""
    splits = ", ".join(f"{n:,} {split}" for split, n in rows.items() if n)
    lines = [f"rows: {splits}", f"features ({len(types)}):", *_features(types), "tasks:"]
    n_train = rows.get("train", 0)
    for i, t in enumerate(tasks):
        classes = t.class_labels()
        what = f"{t.kind}, {len(classes)} classes" if classes is not None else t.kind
        labelled = _labelled(train, i)
        count = (
            f": {labelled:,} of {n_train:,} training rows labelled" if labelled is not None else ""
        )
        lines.append(f"  {t.name} ({what}){count}")
    return lines
