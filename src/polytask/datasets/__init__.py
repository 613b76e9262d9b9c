"""Data sets shipped with polytask."""

from polytask.datasets.support2 import (
    SUPPORT2_FEATURES,
    SUPPORT2_LEAKY,
    SUPPORT2_TASKS,
    load_support2,
)
from polytask.datasets.synthetic_rec import (
    ESMM_TASKS,
    REC_TASKS,
    oracle_auroc,
    synthetic_rec,
    synthetic_rec_table,
    write_synthetic_rec,
)

__all__ = [
    "ESMM_TASKS",
    "REC_TASKS",
    "SUPPORT2_FEATURES",
    "SUPPORT2_LEAKY",
    "SUPPORT2_TASKS",
    "load_support2",
    "oracle_auroc",
    "synthetic_rec",
    "synthetic_rec_table",
    "write_synthetic_rec",
]
