"""How ``Preprocessor.numeric_block`` fills the numeric block: each numeric column's
slots as index arrays (slices where they line up), so a block of rows is imputed,
standardised and clipped in a few NumPy calls rather than several per column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from polytask.features.cyclical import sin_cos

if TYPE_CHECKING:
    from polytask.features.preprocess import NumericColumn

#: standardised numeric values are clipped to +-this, so an absurd outlier at prediction
#: time (1e300 where training saw 1e3) can't overflow float32 into inf and NaN outputs
MAX_STANDARDISED = 1e6

#: rows standardised at a time by ``Preprocessor.numeric_block`` (bounds its float64
#: working copies on a large table: 65,536 rows x 100 columns is 52 MB)
NUMERIC_ROWS = 65_536


@dataclass
class NumericPlan:
    """Where each numeric column's values go in the numeric block, as index arrays, so a
    block of rows is imputed, standardised and clipped in a few NumPy calls."""

    medians: np.ndarray  # per column
    plain: np.ndarray | slice  # columns standardised (not cyclical); a slice if all
    plain_slots: np.ndarray | slice  # their slots in the block
    means: np.ndarray
    stds: np.ndarray
    cyclic: list[tuple[int, int, float]]  # (column, first slot, period)
    flagged: np.ndarray  # columns with a missing-value indicator
    flag_slots: slice  # their indicators, after the value slots

    @classmethod
    def of(cls, columns: Sequence[NumericColumn]) -> NumericPlan:
        plain, plain_slots, cyclic = [], [], []
        at = 0
        for k, col in enumerate(columns):
            if col.period:
                cyclic.append((k, at, col.period))
            else:
                plain.append(k)
                plain_slots.append(at)
            at += col.slots
        flagged = [k for k, col in enumerate(columns) if col.indicator]
        every = not cyclic  # then column k is slot k: slices instead of index arrays
        return cls(
            medians=np.array([c.median for c in columns], dtype=np.float64),
            plain=slice(0, len(plain)) if every else np.asarray(plain, dtype=np.intp),
            plain_slots=slice(0, len(plain)) if every else np.asarray(plain_slots, np.intp),
            means=np.array([columns[k].mean for k in plain], dtype=np.float64),
            stds=np.array([columns[k].std for k in plain], dtype=np.float64),
            cyclic=cyclic,
            flagged=np.asarray(flagged, dtype=np.intp),
            flag_slots=slice(at, at + len(flagged)),
        )

    def fill(self, values: np.ndarray, out: np.ndarray) -> None:
        """``out`` (rows, width) float32 from ``values`` (rows, columns) float64."""
        miss = np.isnan(values)
        filled = np.where(miss, self.medians, values)
        if len(self.means):
            z = (filled[:, self.plain] - self.means) / self.stds
            np.maximum(z, -MAX_STANDARDISED, out=z)  # np.clip, without its overhead
            out[:, self.plain_slots] = np.minimum(z, MAX_STANDARDISED, out=z)
        for k, at, period in self.cyclic:
            out[:, at], out[:, at + 1] = sin_cos(filled[:, k], period)
        if len(self.flagged):
            out[:, self.flag_slots] = miss[:, self.flagged]
