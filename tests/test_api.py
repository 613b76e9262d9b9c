"""The Python API: fit -> predict/evaluate, save/load round trips, feature selection."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polytask
from polytask import MultiTaskModel, PolytaskError
from tests.conftest import make_table

FAST = {"epochs": 3, "hidden": [32], "verbose": False}
TASKS = ["y_reg:regression", "y_bin:binary", "y_cls:multiclass"]


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return make_table(240, seed=5)


@pytest.fixture(scope="module")
def saved(
    df: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[MultiTaskModel, Path]:
    out = tmp_path_factory.mktemp("api") / "run"
    model = polytask.fit(df, tasks=TASKS, drop=["id"], out=out, **FAST)
    return model, out


def test_fit_returns_a_model_that_predicts_a_frame(
    saved: tuple[MultiTaskModel, Path], df: pd.DataFrame
) -> None:
    model, _ = saved
    assert isinstance(model, MultiTaskModel)
    assert model.task_names == ["y_reg", "y_bin", "y_cls"]
    assert "y_bin (binary)" in repr(model)
    shuffled = df.sample(frac=1.0, random_state=0)  # a non-default index
    pred = model.predict(shuffled, keep=["id"])
    assert isinstance(pred, pd.DataFrame)
    assert list(pred.index) == list(shuffled.index) != list(range(len(df)))  # the input's
    assert pred.loc[shuffled.index[3], "id"] == shuffled["id"].iloc[3]
    assert pred["id"].tolist() == shuffled["id"].tolist()
    assert list(pred.columns) == [
        "id",
        "y_reg",
        "y_reg_lower",
        "y_reg_upper",
        "y_bin",
        "y_bin_proba",
        "y_cls",
        "y_cls_proba_high",
        "y_cls_proba_low",
        "y_cls_proba_mid",
    ]
    # prediction is row-wise: predicting one row alone gives the same numbers
    one = model.predict(shuffled.iloc[[5]])
    assert one["y_reg"].iloc[0] == pytest.approx(pred["y_reg"].iloc[5], rel=1e-5)


def test_evaluate_returns_contract_shape(
    saved: tuple[MultiTaskModel, Path], df: pd.DataFrame
) -> None:
    model, _ = saved
    scores = model.evaluate(df)
    assert set(scores) == {"y_reg", "y_bin", "y_cls"}
    assert scores["y_reg"]["n"] == 240
    assert scores["y_cls"]["n"] == int(df["y_cls"].notna().sum())
    assert set(model.evaluate(df.drop(columns=["y_reg"]))) == {"y_bin", "y_cls"}
    assert model.evaluate(df.drop(columns=["y_reg", "y_bin", "y_cls"])) == {}


def test_fit_does_not_change_the_input_frame(df: pd.DataFrame) -> None:
    before = df.copy()
    polytask.fit(df, tasks=["y_reg:regression"], drop=["id"], epochs=1, hidden=[8])
    pd.testing.assert_frame_equal(df, before)


def test_load_predicts_identically(saved: tuple[MultiTaskModel, Path], df: pd.DataFrame) -> None:
    model, out = saved
    loaded = polytask.load(out)
    pd.testing.assert_frame_equal(loaded.predict(df), model.predict(df))
    for a, b in zip(loaded.predict_raw(df), model.predict_raw(df), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.evaluate(df) == model.evaluate(df)
    assert loaded.metrics == json.loads(json.dumps(model.metrics))
    assert loaded.config == model.config
    assert loaded.preprocessor == model.preprocessor


def test_save_then_load(
    saved: tuple[MultiTaskModel, Path], df: pd.DataFrame, tmp_path: Path
) -> None:
    model, _ = saved
    path = model.save(tmp_path / "copy")
    assert (path / "history.jsonl").read_text().count("\n") == len(model.history) == 3
    pd.testing.assert_frame_equal(polytask.load(path).predict(df), model.predict(df))
    with pytest.raises(PolytaskError, match="already exists"):
        model.save(tmp_path / "copy")
    model.save(tmp_path / "copy", overwrite=True)


def test_fit_from_a_file_path_and_task_mappings(df: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    df.to_parquet(path, index=False)
    model = polytask.fit(
        str(path),
        tasks={"y_bin": "binary", "y_reg": {"kind": "regression", "transform": "none"}},
        drop=["id"],
        **FAST,
    )
    assert model.task_names == ["y_bin", "y_reg"]
    assert model.tasks[1].options.transform == "none"
    assert model.info["rows"]["train"] + model.info["rows"]["validation"] + model.info["rows"][
        "test"
    ] == len(df)


def test_explicit_validation_and_test_frames(df: pd.DataFrame) -> None:
    train, val, test = df.iloc[:150], df.iloc[150:200], df.iloc[200:]
    model = polytask.fit(train, tasks=TASKS, validation=val, test=test, drop=["id"], **FAST, seed=2)
    assert model.info["rows"] == {"train": 150, "validation": 50, "test": 40}
    assert model.metrics["test"]["y_reg"]["n"] == 40
    assert model.metrics["test"] == model.evaluate(test)


def test_validation_only_draws_the_test_split(df: pd.DataFrame) -> None:
    model = polytask.fit(
        df.iloc[:200], tasks=["y_reg:regression"], validation=df.iloc[200:], drop=["id"], **FAST
    )
    assert model.info["rows"] == {"train": 170, "validation": 40, "test": 30}


def test_feature_selection_and_type_overrides(df: pd.DataFrame) -> None:
    model = polytask.fit(df, tasks=["y_reg:regression"], features=["x0", "cat"], **FAST)
    assert model.preprocessor.columns == ["x0", "cat"]
    cfg = {"features": {"categorical": ["x3"], "drop": ["id", "y_bin", "y_cls"]}}
    model = polytask.fit(df, tasks=["y_reg:regression"], config=cfg, **FAST)
    assert model.info["feature_types"]["x3"] == "categorical"
    assert set(model.preprocessor.columns) == {"x0", "x1", "x2", "x3", "cat", "flag"}


def test_free_text_is_encoded_and_row_ids_are_flagged(df: pd.DataFrame, tmp_path) -> None:
    data = df.copy()
    data["note"] = [f"patient {i} said the pain was worse after eating lunch" for i in range(240)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = polytask.fit(data, tasks=["y_reg:regression"], **FAST)
    messages = [str(w.message) for w in caught]
    assert any("'id' looks like a row id" in m for m in messages), messages
    assert model.info["feature_types"]["note"] == "text"
    assert "note" in model.preprocessor.columns
    assert "id" in model.preprocessor.columns  # a warning, not a silent drop
    # the tokenizer travels with the run: a reloaded model predicts the same
    before = model.predict(data.head(20))
    model.save(tmp_path / "run")
    again = polytask.load(tmp_path / "run").predict(data.head(20))
    pd.testing.assert_frame_equal(before, again)


def test_user_errors_raise_polytask_error(df: pd.DataFrame) -> None:
    with pytest.raises(PolytaskError, match="label column 'y_rg'"):
        polytask.fit(df, tasks=["y_rg:regression"], **FAST)
    with pytest.raises(PolytaskError, match="did you mean 'epochs'"):
        polytask.fit(df, tasks=["y_reg:regression"], epoch=3)
    model = polytask.fit(df, tasks=["y_reg:regression"], drop=["id"], epochs=1, hidden=[8])
    with pytest.raises(PolytaskError, match="feature column 'x0'"):
        model.predict(df.drop(columns=["x0"]))
    assert issubclass(PolytaskError, ValueError)


def test_run_directory_permissions_follow_the_umask(
    saved: tuple[MultiTaskModel, Path], tmp_path: Path
) -> None:
    model, _ = saved
    old = os.umask(0o022)
    try:
        path = model.save(tmp_path / "shared")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    for f in path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f.name
