"""Arrow columns -> the arrays the fitted preprocessing makes, without pandas.

Each function reproduces what :class:`~polytask.features.preprocess.Preprocessor` does
to a DataFrame column (tests hold the two to the same numbers): numeric cells parse to
float64 with NaN for missing and non-finite values; categorical cells are looked up in
the vocabulary by the value's canonical text (1, 1.0 and "1" are one category; text is
stripped; an empty string is missing), here by looking the Arrow values up directly in a
vocabulary cast to the column's own type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polytask.errors import PolytaskError
from polytask.features.hashing import bucket_codes, missing_id_error
from polytask.features.preprocess import MISSING, UNKNOWN
from polytask.values import FALSE_WORDS, TRUE_WORDS, canonical


def plain(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array, dictionaries decoded, large strings as strings."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_large_string(values.type) or pa.types.is_string_view(values.type):
        values = values.cast(pa.string())
    return values


def _is_text(values: pa.Array) -> bool:
    return pa.types.is_string(values.type)


def _text_missing(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Stripped text and where it is missing (null or blank)."""
    stripped = pc.utf8_trim_whitespace(values)
    miss = pc.or_kleene(pc.is_null(stripped), pc.equal(stripped, ""))
    return stripped, miss.fill_null(True).to_numpy(zero_copy_only=False)


def missing(values: pa.Array) -> np.ndarray:
    """Where cells are missing: null, NaN, or blank text."""
    if _is_text(values):
        return _text_missing(values)[1]
    return pc.is_null(values, nan_is_null=True).to_numpy(zero_copy_only=False)


def _bad_cells(column: str, shown: list[Any], what: str, fix: str) -> PolytaskError:
    cells = ", ".join(repr(v) for v in shown[:3])
    return PolytaskError(f"feature column '{column}' is {what} but holds {cells}; {fix}")


def numeric(values: pa.Array, column: str) -> np.ndarray:
    """float64 with NaN where missing or not finite."""
    if _is_text(values):
        stripped, miss = _text_missing(values)
        try:
            values = pc.if_else(pa.array(miss), None, stripped).cast(pa.float64())
        except pa.ArrowInvalid:
            bad = [v for v, m in zip(stripped.to_pylist(), miss, strict=True) if not m]
            shown = [v for v in bad if not _parses(v)]
            raise _bad_cells(
                column, shown, "numeric", "fix those cells or declare the column categorical"
            ) from None
    elif any(test(values.type) for test in _NUMBERS):
        values = values.cast(pa.float64())
    elif not pa.types.is_null(values.type):
        raise PolytaskError(
            f"feature column '{column}' is numeric but its cells are {values.type}; give it numbers"
        )
    if pa.types.is_null(values.type):
        return np.full(len(values), np.nan)
    arr = np.array(values.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    arr[~np.isfinite(arr)] = np.nan
    return arr


_NUMBERS = (pa.types.is_boolean, pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)


def _parses(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def boolean(values: pa.Array, column: str) -> np.ndarray:
    """1.0 / 0.0 / NaN: booleans, 0/1 numbers, or true/false, yes/no, 1/0 words."""
    if not _is_text(values):
        arr = numeric(values, column)
        if not (np.isnan(arr) | (arr == 0) | (arr == 1)).all():
            raise PolytaskError(
                f"boolean feature column '{column}' holds values other than 0/1; "
                "declare it numeric or fix the values"
            )
        return arr
    stripped, miss = _text_missing(values)
    lowered = pc.utf8_lower(stripped)
    arr = np.full(len(values), np.nan)
    arr[
        pc.is_in(lowered, pa.array(sorted(TRUE_WORDS)))
        .fill_null(False)
        .to_numpy(zero_copy_only=False)
    ] = 1.0
    arr[
        pc.is_in(lowered, pa.array(sorted(FALSE_WORDS)))
        .fill_null(False)
        .to_numpy(zero_copy_only=False)
    ] = 0.0
    bad = np.isnan(arr) & ~miss
    if bad.any():
        shown = list(dict.fromkeys(np.asarray(stripped.to_pylist(), dtype=object)[bad]))
        raise _bad_cells(
            column, shown, "boolean", "use true/false, yes/no or 1/0, or declare it categorical"
        )
    return arr


def present_values(values: pa.Array) -> pa.Array:
    """The present cells, text stripped: what a vocabulary counts."""
    if _is_text(values):
        stripped, miss = _text_missing(values)
        return stripped.filter(pa.array(~miss))
    return values.filter(pc.invert(pc.is_null(values, nan_is_null=True)))


def canonical_keys(values: pa.Array) -> list[str]:
    """Each distinct value's canonical text, as the in-memory vocabulary names it."""
    if _is_text(values):
        return [str(v) for v in values.to_pylist()]
    if pa.types.is_integer(values.type):
        return [str(v) for v in values.cast(pa.string()).to_pylist()]
    return [canonical(v) for v in values.to_pylist()]


def check_ids(values: pa.Array, column: str) -> None:
    """A hashed column's cells all present, else the missing-ID error naming the row."""
    miss = missing(values)
    if miss.any():
        raise missing_id_error(column, int(np.flatnonzero(miss)[0]))


def canonical_text(values: pa.Array) -> np.ndarray:
    """Each cell's canonical text (numpy str), as :func:`polytask.values.canonical` gives."""
    if _is_text(values):
        return np.asarray(pc.utf8_trim_whitespace(values).to_numpy(zero_copy_only=False), dtype=str)
    if pa.types.is_integer(values.type):
        return np.asarray(values.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=str)
    encoded = pc.dictionary_encode(values)
    keys = np.asarray(canonical_keys(encoded.dictionary), dtype=str)
    return keys[encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)]


def hashed_codes(values: pa.Array, column: str, buckets: int) -> np.ndarray:
    """A hashed categorical's codes; a missing ID is an error naming the row."""
    check_ids(values, column)
    return bucket_codes(canonical_text(values), buckets)


class Lookup:
    """A categorical column's codes from Arrow values: the vocabulary cast once to each
    Arrow type the column arrives in, looked up with ``pc.index_in``."""

    def __init__(self, vocab: list[str]):
        self.vocab = vocab
        self._sets: dict[pa.DataType, tuple[pa.Array, np.ndarray]] = {}

    def _value_set(self, dtype: pa.DataType) -> tuple[pa.Array, np.ndarray]:
        found = self._sets.get(dtype)
        if found is None:
            entries, where = [], []
            for i, key in enumerate(self.vocab):
                value = _as_type(key, dtype)
                if value is not None:
                    entries.append(value)
                    where.append(i)
            found = (pa.array(entries, type=dtype), np.asarray(where, dtype=np.int64) + 2)
            self._sets[dtype] = found
        return found

    def codes(self, values: pa.Array) -> np.ndarray:
        if _is_text(values):
            stripped, miss = _text_missing(values)
            values = stripped
        else:
            miss = missing(values)
        if pa.types.is_null(values.type):
            return np.full(len(values), MISSING, dtype=np.int64)
        if pa.types.is_integer(values.type):
            values = values.cast(pa.int64())
        elif pa.types.is_floating(values.type):
            values = values.cast(pa.float64())
        value_set, code_of = self._value_set(values.type)
        index = pc.index_in(values, value_set=value_set).fill_null(-1).to_numpy()
        codes = np.where(index >= 0, code_of[np.maximum(index, 0)] if len(code_of) else 0, UNKNOWN)
        codes = codes.astype(np.int64)
        codes[miss] = MISSING
        return codes


def _as_type(key: str, dtype: pa.DataType) -> Any:
    """The vocabulary entry ``key`` as a value of ``dtype`` whose canonical text is
    ``key``, or None where no such value exists."""
    if pa.types.is_string(dtype):
        return key
    if pa.types.is_boolean(dtype):
        return {"true": True, "false": False}.get(key)
    try:
        number = float(key)
    except ValueError:
        return None
    if pa.types.is_integer(dtype):
        return int(key) if key.lstrip("-").isdigit() and str(int(key)) == key else None
    if pa.types.is_floating(dtype):
        return number if canonical(number) == key else None
    return None
