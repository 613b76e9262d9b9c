"""Synthetic recommendation logs of any size: impressions with clicks, conversions and
dwell time, ID features with a long tail, a category-history list, and a known sample-
selection bias (conversions are only seen after a click).

Every impression draws dense features ``d0 .. d{dense-1}`` (N(0, 1); ``d{dense-1}`` is
missing in about 5% of rows), a ``user_id`` and an ``item_id`` (Zipf-like over
``users`` / ``items``), the item's ``item_category`` (fixed per item), a ``device`` and an
``hour``, and a ``history`` of up to ``history`` recently viewed categories (a user's
favourite category with probability 0.6, else any). From those, with ``u`` and ``v`` the
user's and the item's effect (a fixed pseudo-random number per ID in [-sqrt(3), sqrt(3)]):

- ``p_click = sigmoid(-2 + 1.5 d0 + 0.5 d1 - 0.5 d2 + 0.5 u + 0.5 v + 1.5 match + dev)``
  where ``match`` is the share of ``history`` equal to ``item_category``;
- ``p_convert`` (post-click) ``= sigmoid(-1 - 1.5 d0 + 0.8 d3 + 0.6 d4 + 0.5 u + 0.5 match)``:
  ``d0`` raises clicks and lowers conversion, so the clicked rows are a biased sample
  of the impressions for conversion;
- ``click ~ Bernoulli(p_click)``; ``conversion = click * Bernoulli(p_convert)`` (0 on
  every unclicked impression: ESMM's click-through-and-conversion label);
- ``dwell`` (seconds, clicked rows only, else missing) ``= exp(2 + 0.4 d5 + 0.3 u + 0.5 e)``.

With ``oracle=True`` the true ``p_click``, ``p_convert`` and the counterfactual
``convert_if_clicked`` (drawn for every impression) are added, so a test can say what a
perfect model scores: ranking all impressions by ``p_click * p_convert`` against
``conversion`` is the best possible; ranking them by ``p_convert`` alone (what a
conversion model trained on clicked rows only estimates) scores less, by a margin these
columns give exactly (:func:`oracle_auroc`).

Rows are generated in fixed blocks of ``BLOCK`` rows, each from its own seed, so row ``i``
is the same whatever the chunking: ``synthetic_rec(n, start=s)`` is rows ``s .. s+n-1``
of one endless log, and :func:`write_synthetic_rec` writes 10 million rows to Parquet a
chunk at a time without holding them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from polytask.errors import PolytaskError

#: rows per generation block (the unit of determinism)
BLOCK = 1 << 16
DEVICES = ("ios", "android", "web", "tv")
DEVICE_EFFECT = np.array([0.3, 0.0, -0.3, -0.6])
#: the task specs that train on a synthetic_rec log
REC_TASKS = ["click:binary", "conversion:binary", "dwell:regression"]
ESMM_TASKS = ["click:binary", "conversion:entire_space:after=click", "dwell:regression"]
ID_COLUMNS = ("user_id", "item_id")


def _mix(ids: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``ids`` (uint64) with ``salt``: a fixed pseudo-random word per ID."""
    z = ids.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (salt + 1)) % 2**64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _effect(ids: np.ndarray, salt: int) -> np.ndarray:
    """A unit-variance effect per ID, uniform on [-sqrt(3), sqrt(3)]."""
    unit = (_mix(ids, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (unit * 2 - 1) * np.sqrt(3.0)


def _zipf_ids(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """IDs in [0, size) with a long tail: a few are frequent, most are rare."""
    u = rng.random(n)
    return np.minimum((size ** (u**1.6)).astype(np.int64) - 1, size - 1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _history(
    rng: np.random.Generator, users: np.ndarray, categories: int, longest: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, 0..longest category codes: ``(offsets (n+1,), codes)``."""
    n = len(users)
    lengths = rng.integers(0, longest + 1, n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    owner = np.repeat(np.arange(n), lengths)
    favourite = (_mix(users, 3) % np.uint64(categories)).astype(np.int64)[owner]
    anyone = rng.integers(0, categories, owner.size)
    codes = np.where(rng.random(owner.size) < 0.6, favourite, anyone)
    return offsets, codes


def _block(
    b: int, seed: int, dense: int, users: int, items: int, categories: int, longest: int
) -> dict:
    rng = np.random.default_rng([seed, b])
    n = BLOCK
    x = rng.standard_normal((n, dense))
    user = _zipf_ids(rng, n, users)
    item = _zipf_ids(rng, n, items)
    category = (_mix(item, 4) % np.uint64(categories)).astype(np.int64)
    device = rng.integers(0, len(DEVICES), n)
    hour = rng.integers(0, 24, n)
    offsets, codes = _history(rng, user, categories, longest)
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(n), lengths)
    hits = np.bincount(owner, weights=codes == category[owner], minlength=n)
    match = hits / np.maximum(lengths, 1)
    u, v = _effect(user, 1), _effect(item, 2)
    s_click = -2 + 1.5 * x[:, 0] + 0.5 * x[:, 1] - 0.5 * x[:, 2] + 0.5 * u + 0.5 * v
    p_click = _sigmoid(s_click + 1.5 * match + DEVICE_EFFECT[device])
    p_convert = _sigmoid(-1 - 1.5 * x[:, 0] + 0.8 * x[:, 3] + 0.6 * x[:, 4] + 0.5 * u + 0.5 * match)
    click = rng.random(n) < p_click
    convert_if_clicked = rng.random(n) < p_convert
    dwell = np.exp(2 + 0.4 * x[:, 5] + 0.3 * u + 0.5 * rng.standard_normal(n))
    x[rng.random(n) < 0.05, dense - 1] = np.nan
    return {
        "x": x,
        "user_id": user,
        "item_id": item,
        "item_category": category,
        "device": device,
        "hour": hour,
        "history": (offsets, codes),
        "click": click,
        "conversion": click & convert_if_clicked,
        "dwell": np.where(click, dwell, np.nan),
        "p_click": p_click,
        "p_convert": p_convert,
        "convert_if_clicked": convert_if_clicked,
    }


def _slice_block(parts: dict, lo: int, hi: int) -> dict:
    out = {k: v[lo:hi] for k, v in parts.items() if k != "history"}
    offsets, codes = parts["history"]
    out["history"] = (offsets[lo : hi + 1] - offsets[lo], codes[offsets[lo] : offsets[hi]])
    return out


def _category_names(codes: np.ndarray) -> pa.Array:
    return pa.array(np.char.add("c", codes.astype(str)) if codes.size else np.array([], str))


def _table(parts: dict, dense: int, history_format: str, oracle: bool) -> pa.Table:
    columns: dict[str, pa.Array] = {
        f"d{j}": pa.array(parts["x"][:, j].astype(np.float32), from_pandas=True)
        for j in range(dense)
    }
    columns["user_id"] = pa.array(parts["user_id"])
    columns["item_id"] = pa.array(parts["item_id"])
    columns["item_category"] = _category_names(parts["item_category"])
    columns["device"] = pa.array(np.array(DEVICES)[parts["device"]])
    columns["hour"] = pa.array(parts["hour"])
    offsets, codes = parts["history"]
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _category_names(codes))
    if history_format == "string":
        columns["history"] = pc.binary_join(lists, "|")
    else:
        columns["history"] = lists
    columns["click"] = pa.array(parts["click"].astype(np.int8))
    columns["conversion"] = pa.array(parts["conversion"].astype(np.int8))
    columns["dwell"] = pa.array(parts["dwell"].astype(np.float32), from_pandas=True)
    if oracle:
        for key in ("p_click", "p_convert"):
            columns[key] = pa.array(parts[key])
        columns["convert_if_clicked"] = pa.array(parts["convert_if_clicked"].astype(np.int8))
    return pa.table(columns)


def _check(n: int, start: int, dense: int, history_format: str) -> None:
    if n < 0 or start < 0:
        raise PolytaskError(f"n and start must be at least 0, got n={n}, start={start}")
    if dense < 6:
        raise PolytaskError(f"dense must be at least 6 (d0..d5 drive the tasks), got {dense}")
    if history_format not in ("list", "string"):
        raise PolytaskError(f"history_format is 'list' or 'string', got {history_format!r}")


def synthetic_rec_table(
    n: int,
    *,
    start: int = 0,
    seed: int = 0,
    dense: int = 20,
    users: int = 1_000_000,
    items: int = 200_000,
    categories: int = 100,
    history: int = 8,
    history_format: str = "list",
    oracle: bool = False,
) -> pa.Table:
    """Rows ``start .. start+n-1`` of the log as an Arrow table (see the module docstring).

    ``history_format`` "list" gives a list<string> column, "string" the same categories
    joined by ``|``."""
    _check(n, start, dense, history_format)
    tables = []
    first, stop = start // BLOCK, (start + n + BLOCK - 1) // BLOCK
    for b in range(first, stop):
        lo = max(start - b * BLOCK, 0)
        hi = min(start + n - b * BLOCK, BLOCK)
        parts = _block(b, seed, dense, users, items, categories, history)
        tables.append(_table(_slice_block(parts, lo, hi), dense, history_format, oracle))
    if not tables:
        empty = _block(0, seed, dense, users, items, categories, history)
        return _table(_slice_block(empty, 0, 0), dense, history_format, oracle)
    return pa.concat_tables(tables)


def synthetic_rec(n: int, **options) -> pd.DataFrame:
    """The log as a DataFrame (``history`` cells are lists of category names, or
    ``|``-joined text with ``history_format="string"``); options as
    :func:`synthetic_rec_table`."""
    frame = synthetic_rec_table(n, **options).to_pandas()
    if "history" in frame and len(frame) and not isinstance(frame["history"].iloc[0], str):
        frame["history"] = [list(v) for v in frame["history"]]
    return frame


def write_synthetic_rec(
    path: str | Path, n: int, *, chunk_rows: int = 1 << 20, row_group_rows: int = 1 << 17, **options
) -> Path:
    """Write ``n`` rows to one Parquet file, ``chunk_rows`` at a time (memory stays at one
    chunk), in row groups of ``row_group_rows``; atomically (a temporary file in the same
    folder, renamed into place), so a killed run leaves no partial file."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer: pq.ParquetWriter | None = None
        for s in range(0, max(n, 1), chunk_rows):
            table = synthetic_rec_table(min(chunk_rows, n - s), start=s, **options)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=row_group_rows)
        if writer is not None:
            writer.close()
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def oracle_auroc(frame: pd.DataFrame) -> dict[str, float]:
    """What perfect models score on ``frame`` (made with ``oracle=True``), AUROC of the
    ``conversion`` label over every impression: ``entire_space`` ranks by the true
    ``p_click * p_convert``, ``clicked_only`` by the true ``p_convert`` alone (the best a
    conversion model fitted on clicked rows can do there); their difference is the margin
    the selection bias implies. ``post_click`` is the AUROC of ``p_convert`` against the
    counterfactual ``convert_if_clicked`` over every impression."""
    from sklearn.metrics import roc_auc_score

    y = frame["conversion"].to_numpy()
    both = frame["p_click"].to_numpy() * frame["p_convert"].to_numpy()
    return {
        "entire_space": float(roc_auc_score(y, both)),
        "clicked_only": float(roc_auc_score(y, frame["p_convert"].to_numpy())),
        "post_click": float(roc_auc_score(frame["convert_if_clicked"], frame["p_convert"])),
    }
