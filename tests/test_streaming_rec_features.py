"""Multi-hot columns and per-task sample weights in streamed tables: the one-pass fit
gives the in-memory vocabulary, and streamed training on a Parquet file or a CSV learns
the model the in-memory trainer learns from the same rows.

Why the two models can be compared closely: with one batch holding every training row
and no dropout, each step's loss is a (weighted) mean over the same rows in both
trainers; only the order of the rows, hence of float32 summation, differs (about 1e-7
relative per step). Over a few AdamW steps that stays orders of magnitude below the
1e-4 the predictions are held to, while a weight or a bag encoded differently moves
them by far more (the test checks that too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import polytask
from polytask.api import build_config, train_run
from polytask.features.preprocess import Preprocessor
from polytask.features.stream.splits import split_codes
from polytask.model import build_tasks
from polytask.prepare_stream import prepare_stream

TAGS = ["sports", "news", "music", "film", "food", "travel"]


def rec_log(n: int, seed: int = 0) -> pd.DataFrame:
    """A number, a tag list per row (some empty), a sample weight (some 0) and two
    labels that depend on the tags."""
    rng = np.random.default_rng(seed)
    tags = [list(rng.choice(TAGS, rng.integers(0, 4), replace=False)) for _ in range(n)]
    x = rng.normal(0, 1, n)
    score = x + np.array([("sports" in t) - ("news" in t) for t in tags], dtype=float)
    return pd.DataFrame(
        {
            "x": x,
            "tags": tags,
            "w": rng.choice([0.0, 0.5, 1.0, 3.0], n),
            "click": (score + rng.normal(0, 0.5, n) > 0).astype(int),
            "dwell": score * 2 + rng.normal(0, 0.3, n),
        }
    )


def _config(path: Path | None) -> polytask.api.RunConfig:
    cfg = build_config(
        tasks=[
            {"name": "click", "kind": "binary", "weight": "w"},
            {"name": "dwell", "kind": "regression", "weight": "w"},
        ],
        hidden=[8],
        batch_size=4096,
        epochs=4,
        lr=0.01,
        progress=False,
        patience=None,
        seed=0,
    )
    cfg.model.dropout = 0.0
    cfg.features.multi_hot = ["tags"]
    cfg.features.numeric = ["x"]
    if path is not None:
        cfg.data.path, cfg.data.streaming = str(path), "true"
    return cfg


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path, Path]:
    df = rec_log(400)
    folder = tmp_path_factory.mktemp("log")
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False), folder / "log.parquet", row_group_size=90
    )
    flat = df.assign(tags=["|".join(t) for t in df["tags"]])
    flat.to_csv(folder / "log.csv", index=False)
    return df, folder / "log.parquet", folder / "log.csv"


def _in_memory(df: pd.DataFrame) -> polytask.MultiTaskModel:
    codes = split_codes(np.arange(len(df), dtype=np.uint64), 0, 0.15, 0.15)
    return polytask.fit(
        df[codes == 0], config=_config(None), validation=df[codes == 1], test=df[codes == 2]
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_streamed_multi_hot_and_weights_train_the_in_memory_model(
    log: tuple[pd.DataFrame, Path, Path], fmt: str, tmp_path: Path
) -> None:
    df, parquet, csv = log
    cfg = _config(parquet if fmt == "parquet" else csv)
    prepared = prepare_stream(cfg, build_tasks(cfg))
    bag = prepared.preprocessors[0].bags[0]
    codes = split_codes(np.arange(len(df), dtype=np.uint64), 0, 0.15, 0.15)
    memory_pre = Preprocessor.fit(df[codes == 0], {"x": "numeric", "tags": "multi_hot"})
    assert bag.vocab == memory_pre.bags[0].vocab == sorted(TAGS)
    streamed = train_run(cfg, out=tmp_path / "run", verbose=False)
    memory = _in_memory(df)
    assert streamed.info["rows"] == memory.info["rows"]
    a, b = streamed.predict(df), memory.predict(df)
    np.testing.assert_allclose(a["dwell"], b["dwell"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a["click_proba"], b["click_proba"], rtol=1e-4, atol=1e-4)
    # the weights matter: unweighted, the same rows give another model
    plain = df.assign(w=1.0)
    other = _in_memory(plain).predict(df)
    assert np.abs(other["dwell"] - b["dwell"]).max() > 1e-2


def test_the_arrow_bag_codes_equal_the_dataframe_ones(log: tuple[pd.DataFrame, Path, Path]) -> None:
    from polytask.features.stream.encode import ArrowEncoder

    df, parquet, _ = log
    pre = Preprocessor.fit(df, {"x": "numeric", "tags": "multi_hot"})
    table = pq.read_table(parquet)
    got, want = ArrowEncoder(pre).encode(table), pre.transform(df)
    assert torch.equal(got.extra["tags"], want.extra["tags"])
