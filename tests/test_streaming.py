"""Streamed tables: the one-pass fit equals the in-memory one (means and standard
deviations to 1e-6 relative, vocabularies exactly, medians exactly while the training
split fits the sample and within the stated rank bound when it doesn't), Arrow encoding
equals ``Preprocessor.transform``, splits are fixed by a hash, and every epoch reads
every training row once, in a new order."""

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
from polytask.errors import PolytaskError
from polytask.features.preprocess import Preprocessor
from polytask.features.splits import split_frame_by_key
from polytask.features.stream.encode import ArrowEncoder
from polytask.features.stream.files import open_parquet
from polytask.features.stream.fit import FitOptions, FitPass
from polytask.features.stream.splits import split_codes, uniform
from polytask.features.stream.stats import Moments, median_bound
from polytask.model import build_tasks
from polytask.predict_stream import evaluate_file, predict_file
from polytask.prepare_stream import prepare_stream

TYPES = {
    "x0": "numeric",
    "x1": "numeric",
    "n_int": "numeric",
    "flag": "boolean",
    "word": "boolean",
    "cat": "categorical",
    "uid": "categorical",
    "grade": "categorical",
}


def make_rec(n: int, seed: int = 0) -> pd.DataFrame:
    """Dense numbers (with gaps and inf), booleans, categoricals (text with stray
    spaces, integer ids, floats), a row id, and click / dwell labels."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(3.0, 2.0, n)
    x1 = rng.exponential(1.0, n)
    x1[rng.random(n) < 0.1] = np.nan
    x1[rng.random(n) < 0.01] = np.inf
    cat = rng.choice(["a", " b", "c ", "d", "e"], n, p=[0.4, 0.3, 0.15, 0.1, 0.05]).astype(object)
    cat[rng.random(n) < 0.05] = None
    cat[rng.random(n) < 0.02] = "  "
    uid = rng.zipf(1.6, n) % 500
    click = (rng.random(n) < 1 / (1 + np.exp(-(x0 - 3) - (cat == "a")))).astype(int)
    return pd.DataFrame(
        {
            "rid": np.arange(n),
            "x0": x0,
            "x1": x1,
            "n_int": rng.integers(-5, 50, n),
            "flag": rng.random(n) < 0.3,
            "word": rng.choice(["yes", "No ", "YES"], n),
            "cat": cat,
            "uid": uid,
            "grade": rng.choice([1.0, 2.5, 3.0], n),
            "click": click,
            "dwell": np.where(click == 1, np.exp(rng.normal(1, 0.5, n)), np.nan),
        }
    )


def write_parts(df: pd.DataFrame, folder: Path, parts: int = 3, group: int = 250) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(df)), parts)):
        table = pa.Table.from_pandas(df.iloc[part], preserve_index=False)
        pq.write_table(table, folder / f"part-{i:02d}.parquet", row_group_size=group)
    return folder


def stream_fit(folder: Path, types: dict[str, str], **options: object) -> FitPass:
    source = open_parquet(folder)
    fitted = FitPass(types, FitOptions(**options))  # type: ignore[arg-type]
    for piece in source.pieces:
        positions = np.arange(piece.offset, piece.offset + piece.rows)
        fitted.add(source.read(piece, list(types)), positions)
    return fitted


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    df = make_rec(3000)
    return df, write_parts(df, tmp_path_factory.mktemp("rec") / "parts")


def test_one_pass_fit_equals_the_in_memory_fit(rec: tuple[pd.DataFrame, Path]) -> None:
    _, folder = rec
    opts = {"max_categories": 200, "min_category_count": 3}
    streamed = stream_fit(folder, TYPES, **opts).preprocessor()
    memory = Preprocessor.fit(pd.read_parquet(folder), TYPES, 200, 3)
    for s, m in zip(streamed.numeric, memory.numeric, strict=True):
        assert (s.name, s.kind, s.indicator, s.median) == (m.name, m.kind, m.indicator, m.median)
        assert s.mean == pytest.approx(m.mean, rel=1e-6, abs=1e-9)
        assert s.std == pytest.approx(m.std, rel=1e-6)
    assert [c.vocab for c in streamed.categorical] == [c.vocab for c in memory.categorical]
    uid = streamed.categorical[1]
    assert 30 < len(uid.vocab) < 200  # the cut-off removed ids seen fewer than 3 times
    assert streamed.categorical[0].vocab == ["a", "b", "c", "d", "e"]
    # the Arrow path encodes exactly as the DataFrame path does
    table = pa.concat_tables(pq.read_table(f) for f in sorted(folder.iterdir()))
    a, b = ArrowEncoder(memory).encode(table), memory.transform(table.to_pandas())
    assert torch.equal(a.numeric, b.numeric) and torch.equal(a.categorical, b.categorical)


def test_max_categories_cut_and_moments_with_any_fill() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(5, 3, 10_000)
    acc = Moments()
    for part in np.array_split(x[:9000], 7):
        acc.add(part)
    mean, std = acc.filled(1000, 2.5)  # the last 1000 cells missing, imputed with 2.5
    filled = np.concatenate([x[:9000], np.full(1000, 2.5)])
    assert mean == pytest.approx(filled.mean(), rel=1e-12)
    assert std == pytest.approx(filled.std(), rel=1e-10)


def test_median_of_a_sample_is_within_the_stated_rank_bound(
    rec: tuple[pd.DataFrame, Path],
) -> None:
    df, folder = rec
    k = 400
    col = stream_fit(folder, {"x0": "numeric"}, sample_rows=k).preprocessor().numeric[0]
    rank = float((df["x0"] < col.median).mean())
    eps = median_bound(k, 1e-6)  # 0.095 for 400 rows
    assert abs(rank - 0.5) <= eps
    assert col.median != pytest.approx(float(df["x0"].median()), abs=1e-9)  # really sampled
    full = df["x0"].to_numpy()
    assert col.mean == pytest.approx(full.mean(), rel=1e-9)  # no gaps: mean is exact


def test_hash_splits_are_fixed_by_key_and_seed() -> None:
    keys = np.arange(200_000, dtype=np.uint64)
    codes = split_codes(keys, 0, 0.15, 0.15)
    assert np.array_equal(codes[1000:2000], split_codes(keys[1000:2000], 0, 0.15, 0.15))
    shares = np.bincount(codes, minlength=3) / len(keys)
    assert shares == pytest.approx([0.7, 0.15, 0.15], abs=0.005)
    assert not np.array_equal(codes, split_codes(keys, 1, 0.15, 0.15))
    assert uniform(keys, 0).min() >= 0 and uniform(keys, 0).max() < 1


def test_a_split_key_puts_each_key_in_one_split_streamed_or_not(
    rec: tuple[pd.DataFrame, Path],
) -> None:
    df, folder = rec
    cfg, tasks = _streamed(folder, epochs=1)
    cfg.data.split_key = "uid"
    rows = prepare_stream(cfg, tasks).rows[0]
    parts = split_frame_by_key(df, "uid", 0.15, 0.15, seed=0)
    assert [rows[k] for k in ("train", "validation", "test")] == [len(p) for p in parts]
    keys = [set(p["uid"]) for p in parts]  # type: ignore[index]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_hashed_ids_stream_as_in_memory_and_a_missing_id_names_file_and_column(
    rec: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    df, folder = rec
    cfg, tasks = _streamed(folder, epochs=1)
    cfg.features.hash_buckets = {"uid": 64}
    pre = prepare_stream(cfg, tasks).preprocessors[0]
    uid = next(c for c in pre.categorical if c.name == "uid")
    assert uid.buckets == 64 and uid.vocab == []
    table = pa.concat_tables(pq.read_table(f) for f in sorted(folder.iterdir()))
    a, b = ArrowEncoder(pre).encode(table), pre.transform(table.to_pandas())
    assert torch.equal(a.categorical, b.categorical) and int(a.categorical.max()) > 30
    holed = tmp_path / "holed"
    holed.mkdir()
    for f in sorted(folder.iterdir()):
        (holed / f.name).write_bytes(f.read_bytes())
    ids = df["uid"].iloc[:300].astype("Int64")  # a null in an int64 ID column
    bad = df.iloc[:300].assign(uid=ids.where(df.index[:300] != 205))
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), holed / "part-05.parquet")
    cfg.data.path = str(holed)
    with pytest.raises(PolytaskError) as err:
        prepare_stream(cfg, build_tasks(cfg))
    assert "part-05.parquet" in str(err.value) and "'uid'" in str(err.value)
    assert "row 205" in str(err.value) and "\n" not in str(err.value)


def _streamed(folder: Path, **keys: object) -> tuple[polytask.api.RunConfig, list]:
    cfg = build_config(
        tasks=["click:binary", "dwell:regression"],
        drop=["rid"],
        hidden=[16],
        batch_size=64,
        progress=False,
        **{"epochs": 2, **keys},
    )
    cfg.data.path, cfg.data.streaming, cfg.data.shuffle_rows = str(folder), "true", 400
    cfg.features.categorical = ["uid", "rid"]
    cfg.features.max_categories = 10_000
    return cfg, build_tasks(cfg)


def _rids(table: object, pre: Preprocessor, batches: object) -> list[int]:
    vocab = next(c.vocab for c in pre.categorical if c.name == "rid")
    col = [c.name for c in pre.categorical].index("rid")
    return [int(vocab[int(code) - 2]) for b in batches for code in b.categorical[:, col]]


def test_every_training_row_once_per_epoch_in_a_new_order(rec: tuple[pd.DataFrame, Path]) -> None:
    df, folder = rec
    cfg, tasks = _streamed(folder)
    cfg.features.drop = []
    prepared = prepare_stream(cfg, tasks)
    train, pre = prepared.tables["train"], prepared.preprocessors[0]
    rows = prepared.rows[0]
    assert sum(rows.values()) == len(df) and abs(rows["train"] / len(df) - 0.7) < 0.04
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    first = _rids(train, pre, train.batches(64, gen))
    second = _rids(train, pre, train.batches(64, gen))
    assert sorted(first) == sorted(second) and len(set(first)) == len(first) == rows["train"]
    assert first != second  # a new order each epoch
    gen.set_state(state)
    assert _rids(train, pre, train.batches(64, gen)) == first  # the same state: the same order
    sizes = train.batch_sizes(64)
    assert sum(sizes) == rows["train"] and max(sizes) - min(sizes) <= 1
    # the rows of one 250-row group are spread over the epoch, not kept together
    group = [r for r in first if r < 250]
    spread = [first.index(r) for r in group]
    assert max(spread) - min(spread) > 300


def test_streamed_training_predicts_and_evaluates_like_a_run(
    rec: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    df, folder = rec
    cfg, _ = _streamed(folder, epochs=3)
    cfg.features.categorical = ["uid"]
    model = train_run(cfg, out=tmp_path / "run", verbose=False)
    assert model.info["rows"]["train"] + model.info["rows"]["test"] < len(df)
    # the in-memory trainer on the same split rows (only the order differs) learns as much
    codes = split_codes(np.arange(len(df), dtype=np.uint64), 0, 0.15, 0.15)
    plain = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": None})})
    memory = polytask.fit(
        df[codes == 0], config=plain, validation=df[codes == 1], test=df[codes == 2]
    )
    assert model.metrics["test"]["click"]["n"] == memory.metrics["test"]["click"]["n"]
    auroc = model.metrics["test"]["click"]["auroc"]
    assert auroc == pytest.approx(memory.metrics["test"]["click"]["auroc"], abs=0.03)
    assert auroc > 0.65
    loaded = polytask.api.load(tmp_path / "run")
    out = tmp_path / "p.parquet"
    assert predict_file(loaded, folder, out, keep=["rid"]) == len(df)
    streamed = pd.read_parquet(out)
    expected = loaded.predict(df, keep=["rid"])
    pd.testing.assert_frame_equal(streamed, expected, check_dtype=False)
    scores, memory_scores = evaluate_file(loaded, folder), loaded.evaluate(df)
    for task, metrics in memory_scores.items():
        # summed in another order; abs: an R² near 0 is 1 minus a ratio near 1, so its
        # rounding is absolute (2.7e-11 measured on an r2_log of 8e-4)
        assert scores[task] == pytest.approx(metrics, rel=1e-9, abs=1e-9)


def test_a_crashed_streamed_run_resumes_exactly(tmp_path: Path) -> None:
    from tests.test_resume import Crash, CrashAt

    folder = write_parts(make_rec(800, seed=3), tmp_path / "parts", parts=2, group=100)
    cfg, _ = _streamed(folder, epochs=2, dropout=0.2, checkpoint_every=5, patience=None)
    cfg.training.batch_size, cfg.training.report = 32, False
    whole = train_run(cfg, out=tmp_path / "whole", verbose=False)
    steps = len(whole.history) and whole.info["rows"]["train"] // 32 + 1
    with pytest.raises(Crash):  # in the second epoch, a few steps after a checkpoint
        train_run(cfg, out=tmp_path / "crashed", verbose=False, callbacks=[CrashAt(steps + 7)])
    resumed = polytask.api.resume(tmp_path / "crashed", verbose=False)
    assert resumed.metrics == whole.metrics
    for k, v in whole.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    assert [r["train"] for r in resumed.history] == [r["train"] for r in whole.history]
