"""Array-valued columns: images, segmentation masks and dense maps.

A cell holds a path to a file (PNG, JPEG, BMP, TIFF, GIF or ``.npy``), absolute or
relative to the data file's folder, or an array already in memory (Python API, ``.npz``
tables). Every array of a column must have one shape: H x W, or H x W x C for images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polytask.errors import PolytaskError
from polytask.values import missing_mask

#: DataFrame.attrs key holding the folder that relative paths start from
BASE_DIR = "polytask_base_dir"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
ARRAY_SUFFIXES = (".npy",)


def base_dir(frame: pd.DataFrame | pd.Series) -> Path:
    """The folder relative paths in ``frame`` start from: the data file's, else the cwd."""
    return Path(frame.attrs.get(BASE_DIR) or ".")


def looks_like_array_paths(values: pd.Series, sample: int = 20) -> bool:
    """True when the non-missing cells are file names with an image or .npy suffix, or
    arrays in memory (how type inference spots an image column)."""
    present = values[~missing_mask(values)]
    if present.empty:
        return False
    head = present.iloc[:sample]
    if all(isinstance(v, np.ndarray) and v.ndim >= 2 for v in head):
        return True
    suffixes = IMAGE_SUFFIXES + ARRAY_SUFFIXES
    return all(isinstance(v, str) and v.lower().endswith(suffixes) for v in head)


def _read_one(value: Any, root: Path, column: str, row: int) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if not isinstance(value, str | Path):
        raise PolytaskError(
            f"column '{column}' row {row}: expected a file path or an array, got "
            f"{type(value).__name__}; array columns hold paths to .png/.jpg/.npy files"
        )
    path = Path(value)
    if not path.is_absolute():
        path = root / path
    suffix = path.suffix.lower()
    if not path.is_file():
        raise PolytaskError(
            f"column '{column}' row {row}: file '{path}' does not exist; paths are relative "
            "to the data file's folder"
        )
    try:
        if suffix in ARRAY_SUFFIXES:
            return np.load(path, allow_pickle=False)
        if suffix in IMAGE_SUFFIXES:
            from PIL import Image

            with Image.open(path) as img:
                return np.asarray(img)
    except (OSError, ValueError) as err:
        raise PolytaskError(
            f"column '{column}' row {row}: '{path}' cannot be read ({err}); check the file"
        ) from None
    raise PolytaskError(
        f"column '{column}' row {row}: '{path.name}' is not a supported file; use "
        f"{', '.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)}"
    )


def load_arrays(
    values: pd.Series, root: Path, *, shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack the column's arrays: ``(arrays (N, *shape), present (N,) bool)``. Missing
    cells give zeros and ``present=False``. ``shape`` (from training) is enforced."""
    column = str(values.name)
    missing = missing_mask(values)
    cells = values.to_numpy()
    arrays: list[np.ndarray | None] = []
    for i, (value, miss) in enumerate(zip(cells, missing, strict=True)):
        arrays.append(None if miss else _read_one(value, root, column, i))
    found = [a for a in arrays if a is not None]
    if shape is None:
        if not found:
            raise PolytaskError(f"column '{column}' has no arrays (every cell is empty)")
        shape = tuple(found[0].shape)
    for i, a in enumerate(arrays):
        if a is not None and tuple(a.shape) != shape:
            raise PolytaskError(
                f"column '{column}' row {i}: shape {tuple(a.shape)} differs from "
                f"{shape}; every array of a column needs one size (resize them first)"
            )
    dtype = np.result_type(*[a.dtype for a in found]) if found else np.float32
    out = np.zeros((len(arrays), *shape), dtype=dtype)
    for i, a in enumerate(arrays):
        if a is not None:
            out[i] = a
    return out, ~missing


def image_tensor_layout(arrays: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) images -> float32 (N, C, H, W) in [0, 1] for 8-bit input."""
    if arrays.ndim == 3:
        arrays = arrays[:, None]
    elif arrays.ndim == 4:
        arrays = arrays.transpose(0, 3, 1, 2)
    else:
        raise PolytaskError(
            f"images must be H x W or H x W x C arrays, got {arrays.ndim - 1} dimensions"
        )
    scale = 255.0 if arrays.dtype == np.uint8 else 1.0
    return np.ascontiguousarray(arrays, dtype=np.float32) / np.float32(scale)
