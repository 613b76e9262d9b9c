"""Feature preprocessing (imputation, indicators, standardisation, category buckets, JSON
round trip) and feature-type inference."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from polytask.errors import PolytaskError
from polytask.features.infer import infer_type
from polytask.features.preprocess import MISSING, UNKNOWN, Preprocessor

NAN = np.nan


def train_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.0, NAN, 3.0, 5.0, 100.0],
            "full": [2.0, 4.0, 6.0, 8.0, 10.0],
            "cat": ["b", "a", None, "b", "c"],
            "flag": ["yes", "no", "yes", None, "YES"],
        }
    )


TYPES = {"x": "numeric", "full": "numeric", "cat": "categorical", "flag": "boolean"}


def fitted() -> Preprocessor:
    return Preprocessor.fit(train_frame(), TYPES)


def test_median_imputation_indicator_and_standardisation() -> None:
    pre = fitted()
    x = pre.numeric[0]
    assert x.name == "x" and x.indicator is True
    assert x.median == 4.0  # median of the present values 1, 3, 5, 100
    filled = np.array([1.0, 4.0, 3.0, 5.0, 100.0])
    assert x.mean == pytest.approx(filled.mean())
    assert x.std == pytest.approx(filled.std())
    full = pre.numeric[1]
    assert full.indicator is False
    # layout: one column per numeric/boolean feature, then the indicators
    assert pre.numeric_width == 3 + 2
    feats = pre.transform(train_frame())
    num = feats.numeric.numpy()
    np.testing.assert_allclose(num[:, 0], (filled - filled.mean()) / filled.std(), rtol=1e-6)
    np.testing.assert_allclose(num[:, 3], [0, 1, 0, 0, 0])  # x was missing in row 1
    f = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    np.testing.assert_allclose(num[:, 1], (f - f.mean()) / f.std(), rtol=1e-6)
    # training columns are ~standardised
    assert abs(num[:, 0].mean()) < 1e-6 and num[:, 0].std() == pytest.approx(1.0, rel=1e-5)


def test_statistics_come_from_the_training_frame_only() -> None:
    pre = fitted()
    other = pd.DataFrame(
        {"x": [1000.0, NAN], "full": [2.0, NAN], "cat": ["a", "a"], "flag": ["no", "no"]}
    )
    num = pre.transform(other).numeric.numpy()
    x, full = pre.numeric[0], pre.numeric[1]
    np.testing.assert_allclose(num[:, 0], [(1000 - x.mean) / x.std, (4.0 - x.mean) / x.std])
    np.testing.assert_allclose(num[:, 3], [0, 1])
    # a gap in a column that had none in training: the median, and no new indicator column
    assert num.shape[1] == pre.numeric_width
    np.testing.assert_allclose(num[1, 1], (6.0 - full.mean) / full.std, rtol=1e-6)


def test_boolean_column_becomes_zero_one_then_standardised() -> None:
    pre = fitted()
    flag = pre.numeric[2]
    assert flag.kind == "boolean" and flag.indicator is True
    raw = np.array([1.0, 0.0, 1.0, 1.0, 1.0])  # YES is yes; the gap takes the median (1)
    assert flag.median == 1.0
    assert flag.mean == pytest.approx(raw.mean())
    num = pre.transform(train_frame()).numeric.numpy()
    np.testing.assert_allclose(num[:, 2], (raw - raw.mean()) / raw.std(), rtol=1e-6)
    np.testing.assert_allclose(num[:, 4], [0, 0, 0, 1, 0])


def test_categories_unknown_bucket_zero_missing_bucket_one() -> None:
    pre = fitted()
    cat = pre.categorical[0]
    assert cat.vocab == ["a", "b", "c"]
    assert cat.cardinality == 5
    assert (UNKNOWN, MISSING) == (0, 1)
    codes = pre.transform(train_frame()).categorical[:, 0].tolist()
    assert codes == [3, 2, MISSING, 3, 4]
    new = pd.DataFrame(
        {"x": [1.0] * 4, "full": [1.0] * 4, "cat": ["zzz", None, " a ", ""], "flag": ["no"] * 4}
    )
    assert pre.transform(new).categorical[:, 0].tolist() == [UNKNOWN, MISSING, 2, MISSING]


def test_rare_and_excess_categories_share_the_unknown_bucket() -> None:
    df = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 3 + ["c"] * 1})
    pre = Preprocessor.fit(df, {"c": "categorical"}, min_category_count=2)
    assert pre.categorical[0].vocab == ["a", "b"]
    assert pre.transform(pd.DataFrame({"c": ["c"]})).categorical.item() == UNKNOWN
    pre = Preprocessor.fit(df, {"c": "categorical"}, max_categories=1)
    assert pre.categorical[0].vocab == ["a"]


def test_numeric_categories_match_across_int_and_float_storage() -> None:
    pre = Preprocessor.fit(pd.DataFrame({"zip": [10, 20, 10]}), {"zip": "categorical"})
    # at prediction time a gap turns the column into floats; 10.0 is still category 10
    codes = pre.transform(pd.DataFrame({"zip": [10.0, NAN, 30.0]})).categorical[:, 0]
    assert codes.tolist() == [2, MISSING, UNKNOWN]


def test_infinite_values_are_treated_as_missing() -> None:
    pre = Preprocessor.fit(pd.DataFrame({"x": [1.0, np.inf, 3.0]}), {"x": "numeric"})
    assert pre.numeric[0].median == 2.0 and pre.numeric[0].indicator is True


def test_json_round_trip_gives_identical_transforms() -> None:
    pre = fitted()
    data = json.loads(json.dumps(pre.to_dict(), allow_nan=False))
    again = Preprocessor.from_dict(data)
    assert again == pre
    new = pd.DataFrame(
        {
            "x": [NAN, 7.5, -3.0],
            "full": [NAN, 1.0, 2.0],
            "cat": ["zzz", None, "c"],
            "flag": [None, "no", "yes"],
        }
    )
    a, b = pre.transform(new), again.transform(new)
    assert torch.equal(a.numeric, b.numeric)
    assert torch.equal(a.categorical, b.categorical)


def test_unconvertible_values_name_the_column() -> None:
    pre = fitted()
    bad = train_frame().astype({"x": object})
    bad.loc[0, "x"] = "abc"
    with pytest.raises(PolytaskError, match=r"feature column 'x' is numeric but holds 'abc'"):
        pre.transform(bad)
    bad = train_frame()
    bad.loc[0, "flag"] = "maybe"
    with pytest.raises(PolytaskError, match=r"boolean feature column 'flag' holds 'maybe'"):
        pre.transform(bad)


def test_missing_feature_column_is_named_with_close_matches() -> None:
    pre = fitted()
    df = train_frame().rename(columns={"cat": "Cat"})
    with pytest.raises(PolytaskError, match=r"feature column 'cat' is missing.*close: 'Cat'"):
        pre.transform(df)


def test_no_features_is_an_error() -> None:
    with pytest.raises(PolytaskError, match="no feature columns"):
        Preprocessor.fit(pd.DataFrame({"x": [1]}), {})


# -- inference -------------------------------------------------------------------------------

SENTENCES = [f"patient number {i} reported mild symptoms after the visit" for i in range(40)]


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (pd.Series([1.5, 2.0, NAN]), "numeric"),
        (pd.Series([1, 2, 3]), "numeric"),
        (pd.Series(["1.5", "2", None]), "numeric"),  # numbers stored as text
        (pd.Series(["0", "1", "1"]), "numeric"),  # 0/1 text stays numeric
        (pd.Series([NAN, NAN]), "numeric"),  # nothing to go on
        (pd.Series(["a", "b", "a", None]), "categorical"),
        (pd.Series(["a", "b"], dtype="category"), "categorical"),
        (pd.Series([True, False, True]), "boolean"),
        (pd.Series(["yes", "no", None]), "boolean"),
        (pd.Series(["True", "FALSE", "true"]), "boolean"),
        (pd.Series(SENTENCES), "text"),
        (pd.Series(["short words"] * 40), "categorical"),  # repeated: not free text
    ],
)
def test_infer_type(values: pd.Series, kind: str) -> None:
    assert infer_type(values) == kind


def _numeric_block_by_column(pre: Preprocessor, parsed: list[np.ndarray], n: int) -> np.ndarray:
    """The numeric block one column at a time: the rule ``numeric_block`` vectorises."""
    from polytask.features.cyclical import sin_cos
    from polytask.features.numeric_block import MAX_STANDARDISED

    num = np.empty((n, pre.numeric_width), dtype=np.float32)
    i, j = 0, sum(c.slots for c in pre.numeric)
    for col, arr in zip(pre.numeric, parsed, strict=True):
        miss = np.isnan(arr)
        filled = np.where(miss, col.median, arr)
        if col.period:
            num[:, i], num[:, i + 1] = sin_cos(filled, col.period)
        else:
            num[:, i] = np.clip((filled - col.mean) / col.std, -MAX_STANDARDISED, MAX_STANDARDISED)
        i += col.slots
        if col.indicator:
            num[:, j] = miss
            j += 1
    return num


@pytest.mark.parametrize("rows_at_a_time", [65_536, 7])
def test_numeric_block_equals_the_column_by_column_rule_bit_for_bit(monkeypatch, rows_at_a_time):
    """Plain, boolean and cyclical columns between plain ones, missing values, values far
    beyond the clip, and (at 7 rows a block) a table split into uneven blocks."""
    import polytask.features.preprocess as preprocess

    monkeypatch.setattr(preprocess, "NUMERIC_ROWS", rows_at_a_time)
    rng = np.random.default_rng(3)
    n = 40
    hour = rng.uniform(0, 24, n)
    hour[[2, 9]] = NAN
    train = pd.DataFrame(
        {
            "a": rng.normal(5, 2, n),
            "hour": hour,
            "flag": rng.integers(0, 2, n).astype(float),
            "b": np.where(rng.random(n) < 0.3, NAN, rng.normal(0, 1e-3, n)),
        }
    )
    types = {"a": "numeric", "hour": "cyclical", "flag": "boolean", "b": "numeric"}
    pre = Preprocessor.fit(train, types, cyclical={"hour": 24.0})
    assert [c.period for c in pre.numeric] == [None, 24.0, None, None]
    test = train.copy()
    test.loc[[0, 5], "a"] = [1e300, -1e300]  # standardised beyond MAX_STANDARDISED
    test.loc[[1, 4], "b"] = NAN
    parsed = [test[c.name].to_numpy(dtype=np.float64) for c in pre.numeric]
    got = pre.numeric_block(parsed, n)
    want = _numeric_block_by_column(pre, parsed, n)
    assert got.tobytes() == want.tobytes()
    assert got[0, 0] == np.float32(1e6) and got[5, 0] == np.float32(-1e6)
    assert pre.transform(test).numeric.numpy().tobytes() == want.tobytes()
    assert pre.numeric_block([p[:0] for p in parsed], 0).shape == (0, pre.numeric_width)


def test_numeric_block_follows_replaced_columns():
    """The plan kept between calls is remade when the columns change."""
    from dataclasses import replace

    pre = Preprocessor.fit(pd.DataFrame({"a": [0.0, 2.0, 4.0]}), {"a": "numeric"})
    parsed = [np.array([2.0, 6.0])]
    before = pre.numeric_block(parsed, 2)
    pre.numeric = [replace(pre.numeric[0], mean=6.0)]
    after = pre.numeric_block(parsed, 2)
    assert after[1, 0] == 0.0 and before[1, 0] != 0.0
    assert np.array_equal(after[:, 0], before[:, 0] - np.float32(4.0 / pre.numeric[0].std))
