"""What serving and export support: table features and per-row task outputs."""

from __future__ import annotations

from polytask.errors import PolytaskError
from polytask.model import MultiTaskModel


def check_tabular(model: MultiTaskModel, verb: str, text: bool = True) -> None:
    """Refuse, with one line, a model that ``verb`` (serve, export) cannot handle: a
    per-pixel task (``Task.dense``: its outputs are maps, not one row per record), an
    image feature (its values are file paths), and a text feature unless ``text``."""
    for task in model.tasks:
        if task.dense:
            raise PolytaskError(
                f"cannot {verb} task '{task.name}' ({task.kind}): it predicts per pixel and "
                "only tasks with one output row per record are supported; use polytask predict"
            )
    pre = model.preprocessor
    unsupported = list(getattr(pre, "images", []))
    if not text:
        unsupported += list(getattr(pre, "text", [])) + list(getattr(pre, "bags", []))
    if unsupported:
        col = unsupported[0]
        kind = (
            "text"
            if col in getattr(pre, "text", [])
            else "multi-hot"
            if col in getattr(pre, "bags", [])
            else "image"
        )
        raise PolytaskError(
            f"cannot {verb} a model with the {kind} feature '{col.name}': only numeric, "
            "boolean and categorical features are supported; use polytask predict"
        )
