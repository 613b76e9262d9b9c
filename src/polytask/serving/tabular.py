"""What serving and export support: every feature but multi-hot ones in export, and
tasks with one output row per record or per-pixel maps."""

from __future__ import annotations

from polytask.errors import PolytaskError
from polytask.model import MultiTaskModel


def check_tabular(model: MultiTaskModel, verb: str, text: bool = True) -> None:
    """Refuse, with one line, a model that ``verb`` (serve, export) cannot handle: a text
    or multi-hot feature unless ``text``. Image features arrive as arrays (HTTP: nested
    JSON lists of pixel values) and per-pixel tasks answer with one map per record."""
    pre = model.preprocessor
    unsupported = [] if text else list(getattr(pre, "text", [])) + list(getattr(pre, "bags", []))
    if unsupported:
        col = unsupported[0]
        kind = "text" if col in getattr(pre, "text", []) else "multi-hot"
        raise PolytaskError(
            f"cannot {verb} a model with the {kind} feature '{col.name}': only numeric, "
            "boolean, categorical and image features are supported; use polytask predict"
        )
