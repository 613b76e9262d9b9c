"""polytask: one neural network, several prediction tasks, balanced training.

>>> import polytask
>>> model = polytask.fit(df, tasks=["hospdead:binary", "slos:regression"], epochs=30)
>>> model.predict(new_rows)            # a DataFrame, one column per task
>>> model.evaluate(labelled_rows)      # {task: {metric: value, "n": rows}}
>>> model.save("runs/support2"); polytask.load("runs/support2")

The API (and torch with it) is imported on first use of one of its names, not by
``import polytask``: importing any submodule imports this root first, and the command
line must answer ``--help`` and user errors without waiting seconds for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from polytask.errors import PolytaskError
from polytask.version import __version__

if TYPE_CHECKING:
    from polytask.api import build_config, fit, load
    from polytask.model import MultiTaskModel
    from polytask.tuning import tune

_LAZY = {
    "build_config": "polytask.api",
    "fit": "polytask.api",
    "load": "polytask.api",
    "MultiTaskModel": "polytask.model",
    "tune": "polytask.tuning",
}


def __getattr__(name: str) -> Any:
    """PEP 562: the API's names, imported when first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'polytask' has no attribute '{name}'")


__all__ = ["MultiTaskModel", "PolytaskError", "__version__", "build_config", "fit", "load", "tune"]
