"""What serving and export support: table features and per-row task outputs."""

from __future__ import annotations

from polytask.errors import PolytaskError
from polytask.model import MultiTaskModel

#: task kinds whose outputs are one row of numbers per input row
ROW_KINDS = frozenset({"regression", "binary", "multiclass", "multilabel", "count"})


def check_tabular(model: MultiTaskModel, verb: str, text: bool = True) -> None:
    """Refuse, with one line, a model that ``verb`` (serve, export) cannot handle: a
    per-pixel task, an image feature (its values are file paths), and a text feature
    unless ``text``."""
    for task in model.tasks:
        if task.kind not in ROW_KINDS or getattr(task, "dense", False):
            raise PolytaskError(
                f"cannot {verb} task '{task.name}' ({task.kind}): only "
                f"{', '.join(sorted(ROW_KINDS))} tasks are supported; use polytask predict"
            )
    pre = model.preprocessor
    unsupported = list(getattr(pre, "images", []))
    if not text:
        unsupported += list(getattr(pre, "text", []))
    if unsupported:
        col = unsupported[0]
        kind = "text" if col in getattr(pre, "text", []) else "image"
        raise PolytaskError(
            f"cannot {verb} a model with the {kind} feature '{col.name}': only numeric, "
            "boolean and categorical features are supported; use polytask predict"
        )
