"""The synthetic recommendation log: deterministic whatever the chunking, the documented
rates and columns, and a selection bias whose size the oracle columns give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from polytask.datasets.synthetic_rec import (
    BLOCK,
    oracle_auroc,
    synthetic_rec,
    write_synthetic_rec,
)
from polytask.errors import PolytaskError


def test_rows_do_not_depend_on_chunking() -> None:
    whole = synthetic_rec(BLOCK + 20)
    part = synthetic_rec(30, start=BLOCK - 10)
    pd.testing.assert_frame_equal(part, whole.iloc[BLOCK - 10 :].reset_index(drop=True))


def test_columns_rates_and_labels() -> None:
    df = synthetic_rec(20_000, oracle=True)
    assert len(df.columns) == 32  # 29 log columns + 3 oracle columns
    assert 0.15 < df["click"].mean() < 0.25
    # conversions only follow clicks; dwell only exists for clicks
    assert (df.loc[df["click"] == 0, "conversion"] == 0).all()
    assert df["dwell"].isna().to_numpy().tolist() == (df["click"] == 0).tolist()
    assert 0.03 < df["d19"].isna().mean() < 0.07
    # the item's category is fixed per item
    assert df.groupby("item_id")["item_category"].nunique().max() == 1
    assert all(isinstance(h, list) for h in df["history"].iloc[:50])
    # IDs have a long tail: the most frequent user is far above the median
    counts = df["user_id"].value_counts()
    assert counts.iloc[0] > 50 * counts.median()


def test_the_selection_bias_is_large() -> None:
    o = oracle_auroc(synthetic_rec(50_000, oracle=True))
    assert o["entire_space"] - o["clicked_only"] > 0.15


def test_history_as_text_and_parquet_writing(tmp_path) -> None:
    text = synthetic_rec(200, history_format="string")
    lists = synthetic_rec(200)
    assert text["history"].tolist() == ["|".join(h) for h in lists["history"]]
    out = write_synthetic_rec(tmp_path / "log.parquet", 2500, chunk_rows=1000, row_group_rows=500)
    f = pq.ParquetFile(out)
    assert f.metadata.num_rows == 2500 and f.metadata.num_row_groups == 5  # 2 + 2 + 1 per chunk
    back = f.read().to_pandas()
    assert np.array_equal(back["d0"].to_numpy(), synthetic_rec(2500)["d0"].to_numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["log.parquet"]


def test_bad_sizes_are_one_line_errors() -> None:
    with pytest.raises(PolytaskError, match="dense must be at least 6"):
        synthetic_rec(10, dense=3)
