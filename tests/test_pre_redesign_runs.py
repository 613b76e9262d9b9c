"""Runs written before the orchestration redesign (commit cb140ee, see
tests/fixtures/make_pre_redesign.py) still load and predict exactly as they did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polytask

ROOT = Path(__file__).parent / "fixtures" / "pre_redesign"


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for col in want.columns:
        if pd.api.types.is_numeric_dtype(want[col]):
            np.testing.assert_allclose(
                got[col].to_numpy(float),
                want[col].to_numpy(float),
                rtol=1e-5,
                atol=1e-6,
                err_msg=col,
            )
        else:
            assert got[col].astype(str).tolist() == want[col].astype(str).tolist(), col


def test_tabular_run_predicts_as_before():
    model = polytask.load(ROOT / "tabular")
    got = model.predict(pd.read_csv(ROOT / "new.csv"))
    assert_same(got.reset_index(drop=True), pd.read_csv(ROOT / "tabular_predictions.csv"))


@pytest.mark.parametrize(("source", "frame"), [("patients", "new.csv"), ("trial", "other.csv")])
def test_multi_source_run_predicts_as_before(source, frame):
    model = polytask.load(ROOT / "multi_source")
    want = pd.read_csv(ROOT / f"multi_source_{source}_predictions.csv")
    data = pd.read_csv(ROOT / frame).head(len(want))
    got = model.predict(data, source=source)
    assert_same(got.reset_index(drop=True), want)
