"""What the per-pixel kinds share: reading label maps from a column of paths or arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polytask.errors import PolytaskError
from polytask.features.arrays import base_dir, load_arrays


def read_maps(
    task: str, labels: pd.Series, shape: tuple[int, ...] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(maps (N, H, W), present (N,))`` from a column of mask/map files or arrays."""
    maps, present = load_arrays(labels, base_dir(labels))
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if maps.ndim != 3:
        raise PolytaskError(
            f"task '{task}': column '{labels.name}' holds arrays of shape {maps.shape[1:]}; "
            "a per-pixel label map must be H x W (one value per pixel)"
        )
    if shape is not None and tuple(maps.shape[1:]) != tuple(shape):
        raise PolytaskError(
            f"task '{task}': column '{labels.name}' holds {maps.shape[1]} x {maps.shape[2]} "
            f"maps but the model was trained on {shape[0]} x {shape[1]}; resize them"
        )
    return maps, present
