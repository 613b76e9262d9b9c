"""Image columns: the fitted shape and per-channel scaling, and images to tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from polytask.errors import PolytaskError
from polytask.features.arrays import image_tensor_layout, load_arrays


@dataclass
class ImageColumn:
    name: str
    #: the raw array shape of one image: (H, W) or (H, W, C)
    shape: list[int]
    #: per-channel mean and std of the [0, 1]-scaled training images
    mean: list[float]
    std: list[float]

    @property
    def channels(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1


def fit_image(values: pd.Series, root: Any) -> ImageColumn:
    arrays, present = load_arrays(values, root)
    if arrays.ndim not in (3, 4) or (arrays.ndim == 4 and arrays.shape[-1] > 4):
        raise PolytaskError(
            f"image column '{values.name}' holds arrays of shape {arrays.shape[1:]}; an "
            "image is H x W or H x W x C with at most 4 channels"
        )
    x = image_tensor_layout(arrays[present])
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x.std(axis=(0, 2, 3), dtype=np.float64)
    return ImageColumn(
        name=str(values.name),
        shape=[int(d) for d in arrays.shape[1:]],
        mean=[float(m) for m in mean],
        std=[float(v) if v > 1e-6 else 1.0 for v in std],
    )


def image_tensor(col: ImageColumn, values: pd.Series, root: Any) -> np.ndarray:
    arrays, present = load_arrays(values, root, shape=tuple(col.shape))
    x = image_tensor_layout(arrays)
    mean = np.asarray(col.mean, dtype=np.float32)[None, :, None, None]
    std = np.asarray(col.std, dtype=np.float32)[None, :, None, None]
    x = (x - mean) / std
    x[~present] = 0.0  # a missing image is the average image
    return x
