"""The image inputs of an exported graph: one float32 (N, C, H, W) input per image
column, the image standardised with the column's fitted per-channel mean and std
(docs/onnx.md); the named backbone's own resizing and normalisation are in the graph."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from polytask.features.preprocess import Preprocessor


def image_input_names(pre: Preprocessor) -> list[str]:
    """One graph input per image column: ``image_`` and the column name with characters
    other than letters, digits and ``_`` replaced by ``_`` (made unique)."""
    names: list[str] = []
    for col in pre.images:
        base = "image_" + re.sub(r"\W", "_", col.name, flags=re.ASCII)
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def image_spec(pre: Preprocessor) -> list[dict[str, Any]]:
    """The preprocessing file's ``images.features``: per image column its graph input,
    the raw array shape and the per-channel mean and std of the [0, 1]-scaled images."""
    return [
        {"name": c.name, "input": n, "shape": list(c.shape), "mean": c.mean, "std": c.std}
        for n, c in zip(image_input_names(pre), pre.images, strict=True)
    ]


def random_images(pre: Preprocessor, rows: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Standard-normal standardised images, one input per image column."""
    return [
        rng.standard_normal((rows, c.channels, c.shape[0], c.shape[1])).astype(np.float32)
        for c in pre.images
    ]
