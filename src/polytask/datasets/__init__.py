"""Data sets shipped with polytask."""

from polytask.datasets.support2 import (
    SUPPORT2_FEATURES,
    SUPPORT2_LEAKY,
    SUPPORT2_TASKS,
    load_support2,
)

__all__ = ["SUPPORT2_FEATURES", "SUPPORT2_LEAKY", "SUPPORT2_TASKS", "load_support2"]
