"""Training defaults that fit the table: ``training.batch_size``, ``lr``, ``epochs`` and
``patience`` left at ``auto`` are chosen from the training split's rows and features.

The chosen values are written into the run's config before it is saved, so a saved run
states them and a rerun of its config reproduces it; a value the user set is never
changed, and configs saved before these defaults existed hold explicit values already.

The rule (measured on benchmarks/tabular_quality.py's validation splits, see RESULTS.md):

- batch size: about a thirtieth of the rows, a power of two from 32 to 1024, so a small
  table still takes several steps an epoch and a large one is not step-bound;
- learning rate: 2e-3 up to batch 256, above it scaled with the cube root of the batch
  size (on validation, 2e-3 at batch 32 beat 1e-3 and 7e-4 on the small tables);
- epochs: enough for about 4,000 optimiser steps, from 30 to 200, and at most what a
  compute budget of rows x features x epochs allows (a 300k-row table trains in minutes);
- patience: a fifth of the epochs, from 5 to 20.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from polytask.errors import PolytaskError

#: the value of a training key that is chosen from the table
AUTO: Literal["auto"] = "auto"
Auto = Literal["auto"]
#: the training keys that may be ``auto``
AUTO_KEYS = ("batch_size", "lr", "epochs", "patience")

MIN_BATCH, MAX_BATCH, ROWS_PER_BATCH = 32, 1024, 30
BASE_LR, BASE_BATCH = 2e-3, 256
TARGET_STEPS, MIN_EPOCHS, MAX_EPOCHS = 4000, 30, 200
#: rows x features x epochs at most (about 2 minutes of a 2-core machine's epochs)
CELL_EPOCHS = 1.2e8
MIN_PATIENCE, MAX_PATIENCE = 5, 20
_EXAMPLE = {"batch_size": 256, "lr": 0.002, "epochs": 50, "patience": 10}


@dataclass(frozen=True)
class Fixed:
    """The four keys with values (none ``auto``): what the trainer reads."""

    batch_size: int
    lr: float
    epochs: int
    patience: int | None


def _power_of_two(x: float) -> int:
    return int(2 ** round(math.log2(max(x, 1.0))))


def table_defaults(rows: int, features: int, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The four keys' values for a training split of ``rows`` rows and ``features``
    feature columns; the values in ``given`` are kept, and the rest follow them (the rate
    follows a given batch size, the patience given epochs)."""
    given = {k: v for k, v in (given or {}).items() if v != AUTO}
    rows, features = max(int(rows), 1), max(int(features), 1)
    batch = given.get("batch_size") or min(
        MAX_BATCH, max(MIN_BATCH, _power_of_two(rows / ROWS_PER_BATCH))
    )
    lr = given.get("lr") or float(f"{BASE_LR * max(1.0, batch / BASE_BATCH) ** (1 / 3):.3g}")
    epochs = given.get("epochs")
    if epochs is None:
        steps_per_epoch = math.ceil(rows / batch)
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, round(TARGET_STEPS / steps_per_epoch)))
        budget = max(1, int(CELL_EPOCHS / (rows * features)))
        epochs = max(1, min(epochs, budget))
    patience = given.get("patience", min(MAX_PATIENCE, max(MIN_PATIENCE, epochs // 5)))
    return {"batch_size": batch, "lr": lr, "epochs": epochs, "patience": patience}


def auto_keys(training: Any) -> list[str]:
    """The keys of ``training`` (a TrainingConfig) still ``auto``."""
    return [k for k in AUTO_KEYS if getattr(training, k) == AUTO]


def fill(training: Any, rows: int, features: int) -> tuple[Any, dict[str, Any]]:
    """``training`` with its ``auto`` keys chosen for the table, and what was chosen."""
    keys = auto_keys(training)
    if not keys:
        return training, {}
    values = table_defaults(rows, features, {k: getattr(training, k) for k in AUTO_KEYS})
    chosen = {k: values[k] for k in keys}
    return training.model_copy(update=chosen), chosen


def value(training: Any, key: str) -> Any:
    """One key of ``training``, refused with one line while it is still ``auto``."""
    if getattr(training, key) == AUTO:
        raise PolytaskError(
            f"training.{key} is 'auto' but no table was seen to choose it from; "
            f"give a value (e.g. training.{key}: {_EXAMPLE[key]})"
        )
    return getattr(training, key)


def fixed(training: Any) -> Fixed:
    """The four values of a filled ``training`` config."""
    return Fixed(*(value(training, k) for k in ("batch_size", "lr", "epochs", "patience")))


def describe(chosen: dict[str, Any], rows: int, features: int) -> str:
    """Two short lines for the start summary (it fits a narrow terminal)."""
    shown = ", ".join(f"{k} {v}" for k, v in chosen.items())
    return f"training, chosen from {rows:,} rows and {features} features:\n  {shown}"
