"""Which binary label is positive: obvious pairs, the ``positive`` option, and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from polytask.errors import PolytaskError
from polytask.tasks import make_task
from tests.conftest import call_cli

NAN = np.nan


@pytest.mark.parametrize(
    ("labels", "positive"),
    [
        ([1, 0, 1, 0], 1),
        ([0, 1, 0, 1], 1),  # order of appearance does not matter
        ([1.0, 0.0, NAN, 1.0], 1),  # 1.0/0.0 (floats because of a gap)
        ([True, False, True], True),
        (["true", "false"], "true"),
        (["False", "True"], "True"),
        (["TRUE", "FALSE"], "TRUE"),
        (["yes", "no"], "yes"),
        (["No", "Yes"], "Yes"),
        (["YES", "NO"], "YES"),
        (["1", "0"], "1"),
        ([" yes ", "no "], "yes"),  # surrounding spaces are not part of the label
    ],
)
def test_obvious_pairs_make_the_first_value_positive(labels: list[Any], positive: Any) -> None:
    task = make_task("y", "binary", ["y"], {})
    task.fit(pd.Series(labels, name="y"))
    assert task.classes[1] == positive
    assert type(task.classes[1]) is type(positive)
    target, mask = task.encode(pd.Series(labels, name="y"))
    labelled = [v for v in labels if not (isinstance(v, float) and np.isnan(v))]
    got = target[mask].tolist()
    assert got == [
        1.0 if (v.strip() if isinstance(v, str) else v) == positive else 0.0 for v in labelled
    ]


@pytest.mark.parametrize(
    "labels",
    [["died", "alive"], [2, 1], [-1, 1], ["y", "n"], ["t", "f"], ["a", "b"], [0.5, 1.5]],
)
def test_other_pairs_need_positive(labels: list[Any]) -> None:
    task = make_task("outcome", "binary", ["outcome"], {})
    with pytest.raises(PolytaskError) as info:
        task.fit(pd.Series(labels * 3, name="outcome"))
    msg = str(info.value)
    assert "positive" in msg
    assert "outcome:binary:positive=" in msg  # says how to fix it
    for v in labels:
        assert repr(str(v)) in msg  # names both labels


@pytest.mark.parametrize(
    ("labels", "option", "positive"),
    [
        (["died", "alive", "died"], "died", "died"),
        (["died", "alive", "died"], "DIED", "died"),  # case-insensitive
        ([2, 1, 2], 2, 2),
        ([2, 1, 2], "2", 2),  # as a CLI spec gives it: text
        ([-1, 1, 1], "-1", -1),
        ([0.5, 1.5, 1.5], "1.5", 1.5),
        ([1, 0, 1], 0, 0),  # overrides an obvious pair
    ],
)
def test_positive_option_names_the_positive_class(
    labels: list[Any], option: Any, positive: Any
) -> None:
    task = make_task("y", "binary", ["y"], {"positive": option})
    task.fit(pd.Series(labels, name="y"))
    assert task.classes[1] == positive
    target, _ = task.encode(pd.Series(labels, name="y"))
    assert target.tolist() == [1.0 if v == positive else 0.0 for v in labels]


def test_positive_option_that_is_not_a_label_is_an_error() -> None:
    task = make_task("y", "binary", ["y"], {"positive": "dead"})
    with pytest.raises(PolytaskError, match=r"positive='dead' is not one of the labels"):
        task.fit(pd.Series(["died", "alive"], name="y"))


@pytest.mark.parametrize("labels", [["yes", "yes", None], [1, 1, 1]])
def test_one_class_is_an_error(labels: list[Any]) -> None:
    task = make_task("y", "binary", ["y"], {})
    with pytest.raises(PolytaskError, match="only one class"):
        task.fit(pd.Series(labels, name="y"))


def test_more_than_two_labels_is_an_error() -> None:
    task = make_task("y", "binary", ["y"], {})
    with pytest.raises(PolytaskError, match=r"3 distinct labels.*multiclass"):
        task.fit(pd.Series(["a", "b", "c", "a"], name="y"))


def test_unseen_label_at_encode_is_unlabelled_with_a_warning_as_for_multiclass() -> None:
    # one behaviour for every class kind (issue 17): not scored, not trained on, said so
    task = make_task("y", "binary", ["y"], {})
    task.fit(pd.Series(["yes", "no"], name="y"))
    with pytest.warns(UserWarning, match=r"not seen in training: 'maybe' \(1 cell, row 1\)"):
        y, mask = task.encode(pd.Series(["yes", "maybe", "no"], name="y"))
    assert mask.tolist() == [True, False, True] and y[[0, 2]].tolist() == [1.0, 0.0]


def test_obvious_pair_in_mixed_case_within_a_column() -> None:
    task = make_task("y", "binary", ["y"], {})
    labels = ["yes", "Yes", "no", "NO", "YES"]
    task.fit(pd.Series(labels, name="y"))
    target, mask = task.encode(pd.Series(labels, name="y"))
    assert mask.all()
    assert target.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("train", "later"),
    [(["yes", "no"], ["Yes", "No"]), ([True, False], ["True", "False"])],
)
def test_obvious_pair_labels_match_in_any_case_after_training(
    train: list[Any], later: list[Any]
) -> None:
    task = make_task("y", "binary", ["y"], {})
    task.fit(pd.Series(train, name="y"))
    target, mask = task.encode(pd.Series(later, name="y"))
    assert target.tolist() == [1.0, 0.0]
    assert mask.all()


def test_positive_option_written_as_a_float_matches_float_labels() -> None:
    task = make_task("y", "binary", ["y"], {"positive": "2.0"})
    task.fit(pd.Series([2.0, 1.0, NAN, 2.0], name="y"))
    assert task.classes == [1, 2]


def test_positive_in_yaml_config_is_taken_literally(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({"x": rng.normal(size=n), "s": rng.choice(["on", "off"], n)})
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.yaml").write_text(
        "data: {path: d.csv}\n"
        "tasks: [{name: s, kind: binary, positive: on}]\n"
        "training: {epochs: 1}\nmodel: {hidden: [8]}\n"
    )
    result = call_cli(
        ["train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "r", "--quiet"]
    )
    assert result.rc == 0, result.err
    import polytask

    assert polytask.load(tmp_path / "r").tasks[0].classes[1] == "on"
