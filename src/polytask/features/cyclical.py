"""Cyclical numeric columns: a clock or calendar value x with period p becomes the two
features sin(2 pi x / p) and cos(2 pi x / p), so hour 23 sits next to hour 0.

A column is cyclical when ``features.cyclical`` names it (column -> period, a number or
a unit below), or, with ``features.infer_cyclical`` (the default), when its name says
so (``hour``, ``dep_hour``, ``minute_of_day``, ``dow``, ``day_of_week``, ``month``, ...)
and every training value lies in the unit's range. Listing the column in
``features.numeric`` keeps it a plain number."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from polytask.errors import PolytaskError

#: named periods for features.cyclical
UNITS: dict[str, float] = {"hour": 24, "minute_of_day": 1440, "day_of_week": 7, "month": 12}

#: name patterns (on the lower-cased name's ``_``-separated words) -> unit
_NAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(^|_)(minute|min)s?_of_(the_)?day($|_)"), "minute_of_day"),
    (re.compile(r"(^|_)(day_of_(the_)?week|dow|weekday)($|_)"), "day_of_week"),
    (re.compile(r"(^|_)hour(_of_(the_)?day)?($|_)"), "hour"),
    (re.compile(r"(^|_)month(_of_(the_)?year)?($|_)"), "month"),
)


def unit_of_name(name: str) -> str | None:
    """The unit a column's name clearly says (None: it says none)."""
    words = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return next((unit for pattern, unit in _NAMES if pattern.search(words)), None)


def inferred_period(name: str, values: pd.Series) -> float | None:
    """The period of a numeric column whose name says hour / minute of day / day of week /
    month and whose present values all lie in [0, period] (None otherwise)."""
    unit = unit_of_name(name)
    if unit is None or not pd.api.types.is_numeric_dtype(values.dtype):
        return None
    if pd.api.types.is_bool_dtype(values.dtype):
        return None
    arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    present = arr[np.isfinite(arr)]
    period = UNITS[unit]
    if present.size < 2 or present.min() < 0 or present.max() > period:
        return None
    if np.unique(present).size < 3:
        return None
    return period


def period_of(column: str, value: str | float) -> float:
    """A ``features.cyclical`` entry as a period: a positive number or a unit's name."""
    if isinstance(value, str):
        if value in UNITS:
            return UNITS[value]
        try:
            value = float(value)
        except ValueError:
            raise PolytaskError(
                f"features.cyclical: column '{column}' has period '{value}'; give a positive "
                f"number or one of {', '.join(UNITS)}"
            ) from None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise PolytaskError(
            f"features.cyclical: column '{column}' has period {value!r}; give a positive "
            f"number or one of {', '.join(UNITS)}"
        )
    return float(value)


def sin_cos(values: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """The two features of a cyclical column's (imputed) values."""
    angle = (2 * math.pi / period) * values
    return np.sin(angle), np.cos(angle)


def cyclical_periods(
    configured: Mapping[str, str | float], types: Mapping[str, str]
) -> dict[str, float]:
    """Each ``cyclical`` column's period: ``features.cyclical``'s, else its name's unit."""
    periods = {}
    for column, kind in types.items():
        if kind != "cyclical":
            continue
        if column in configured:
            periods[column] = period_of(column, configured[column])
        else:
            unit = unit_of_name(column)
            assert unit is not None, column
            periods[column] = UNITS[unit]
    return periods
