"""Train/validation/test splits drawn with a seed, or given as separate files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polytask.errors import PolytaskError


def split_frame(
    df: pd.DataFrame,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    draw_validation: bool = True,
    draw_test: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """Shuffle rows with ``seed`` and cut off the validation and test parts asked for."""
    n = len(df)
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(n * validation_fraction) if draw_validation else 0
    n_test = round(n * test_fraction) if draw_test else 0
    if draw_validation and validation_fraction > 0:
        n_val = max(n_val, 1)
    if draw_test and test_fraction > 0:
        n_test = max(n_test, 1)
    if n - n_val - n_test < 2:
        raise PolytaskError(
            f"the data has {n} rows, too few to split into train/validation/test; "
            "add rows or give data.validation and data.test files"
        )
    val_idx, test_idx, train_idx = (
        perm[:n_val],
        perm[n_val : n_val + n_test],
        perm[n_val + n_test :],
    )
    train = df.iloc[np.sort(train_idx)].reset_index(drop=True)
    val = df.iloc[np.sort(val_idx)].reset_index(drop=True) if n_val else None
    test = df.iloc[np.sort(test_idx)].reset_index(drop=True) if n_test else None
    return train, val, test


def split_frame_by_key(
    df: pd.DataFrame,
    key: str,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    draw_validation: bool = True,
    draw_test: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """The split a streamed table gives (``data.split_key``): a hash of each row's key, so
    a key's rows share one split, in memory and streamed alike."""
    import pyarrow as pa

    from polytask.features.stream.splits import key_hashes, split_codes

    if key not in df.columns:
        raise PolytaskError(f"split key column '{key}' (data.split_key) is not in the data")
    keys = key_hashes(pa.array(df[key], from_pandas=True), key, "")
    codes = split_codes(keys, seed, validation_fraction, test_fraction, draw_validation, draw_test)
    parts = [df[codes == c].reset_index(drop=True) for c in range(3)]
    if len(parts[0]) < 2:
        raise PolytaskError(
            f"the data has {len(df)} rows, too few to split into train/validation/test; "
            "add rows or give data.validation and data.test files"
        )
    return parts[0], parts[1] if len(parts[1]) else None, parts[2] if len(parts[2]) else None
