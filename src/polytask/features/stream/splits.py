"""Deterministic splits of a streamed table: a row's split is a hash of its key (a column
named by ``data.split_key``) or of its position, so every pass, every process and a
resumed run put each row in the same split without holding a permutation of all rows.

A row goes to validation when u < validation_fraction and to test when it falls in the
next test_fraction of [0, 1), with u uniform from a 64-bit mix of (key, seed); the split
sizes are then binomial around the fractions (about 0.1% off at a million rows).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polytask.errors import PolytaskError

TRAIN, VALIDATION, TEST = 0, 1, 2
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 whose outputs look uniform."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64, copy=True) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(keys: np.ndarray, seed: int) -> np.ndarray:
    """A float in [0, 1) per uint64 key, fixed by (key, seed)."""
    salt = mix64(np.array([seed], dtype=np.uint64))[0]
    return (mix64(keys ^ salt) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def key_hashes(values: pa.Array | pa.ChunkedArray, column: str, where: str) -> np.ndarray:
    """uint64 keys of a split-key column; a missing key is an error naming the column
    (``where`` starts the message: the file and row group, or "")."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    missing = pc.is_null(values, nan_is_null=True)
    if pc.any(missing).as_py():
        row = int(pc.index(missing, True).as_py())
        raise PolytaskError(
            f"{where}split key column '{column}' has a missing value (NaN or "
            f"empty) at row {row}; every row needs a key (or drop data.split_key to split "
            "by position)"
        )
    if pa.types.is_integer(values.type):
        return values.cast(pa.int64()).to_numpy().view(np.uint64)
    if pa.types.is_floating(values.type):
        return values.cast(pa.float64()).to_numpy().view(np.uint64)
    import pandas as pd  # siphash of each string, vectorised (one column, not the table)

    text = values.cast(pa.string()).to_numpy(zero_copy_only=False)
    return pd.util.hash_array(text.astype(object), categorize=True)


def split_codes(
    keys: np.ndarray,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
    draw_validation: bool = True,
    draw_test: bool = True,
) -> np.ndarray:
    """TRAIN, VALIDATION or TEST (uint8) per key."""
    u = uniform(keys, seed)
    codes = np.zeros(len(keys), dtype=np.uint8)
    if draw_validation:
        codes[u < validation_fraction] = VALIDATION
    if draw_test:
        codes[(u >= validation_fraction) & (u < validation_fraction + test_fraction)] = TEST
    return codes
