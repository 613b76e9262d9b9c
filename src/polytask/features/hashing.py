"""A stable hash of category keys, for hashed categoricals (``hash_buckets``).

Python's ``hash`` of a string changes with every process (``PYTHONHASHSEED``), so a
model trained in one process would read another's buckets. This is 64-bit FNV-1a over
the key's Unicode code points (one step per character, read straight from numpy's UTF-32
text), then the splitmix64 finaliser, all in numpy: the same key gives the same bucket
in every process, in training, ``predict``, ``serve`` and under torchrun. Keys are the
canonical text of a value (:func:`polytask.values.canonical`: 7, 7.0 and "7" are one
ID), so a column read as numbers and the same IDs sent as JSON text share buckets.
"""

from __future__ import annotations

import numpy as np

from polytask.errors import PolytaskError

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
#: code 0 is the unknown bucket and 1 the missing one in every categorical; hashed
#: buckets start after them
FIRST_BUCKET = 2


def stable_hash(keys: np.ndarray | list[str]) -> np.ndarray:
    """uint64 hash of each key (text)."""
    text = np.ascontiguousarray(np.asarray(keys, dtype=str))
    n = len(text)
    width = text.dtype.itemsize // 4
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    points = text.view(np.uint32).reshape(n, width).astype(np.uint64)
    lengths = np.char.str_len(text)
    h = np.full(n, FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):
            mixed = (h ^ points[:, j]) * FNV_PRIME
            h = np.where(j < lengths, mixed, h)
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def bucket_codes(keys: np.ndarray | list[str], buckets: int) -> np.ndarray:
    """Category codes (int64) of hashed keys: ``FIRST_BUCKET + hash % buckets``."""
    return (stable_hash(keys) % np.uint64(buckets)).astype(np.int64) + FIRST_BUCKET


def missing_id_error(column: str, row: int) -> PolytaskError:
    return PolytaskError(
        f"feature column '{column}' is hashed (hash_buckets) but row {row} has no value "
        "(NaN, null or empty); every row needs an ID: fill those cells (e.g. with "
        "'unknown') or take the column out of features.hash_buckets"
    )
