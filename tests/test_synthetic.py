"""The MMoE synthetic tasks (Ma et al. 2018, Sec. 3): the correlation knob does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from polytask import PolytaskError
from polytask.datasets.synthetic import mmoe_synthetic


def test_shape_and_reproducibility() -> None:
    df = mmoe_synthetic(50, 0.5, dim=8, seed=3)
    assert list(df.columns) == [*(f"x{i}" for i in range(8)), "y1", "y2"]
    assert df.equals(mmoe_synthetic(50, 0.5, dim=8, seed=3))
    assert not df.equals(mmoe_synthetic(50, 0.5, dim=8, seed=4))
    # the tasks depend on the seed only: more rows extend the same rows of the same tasks
    clean = mmoe_synthetic(50, 0.5, dim=8, noise=0.0, seed=3)
    bigger = mmoe_synthetic(80, 0.5, dim=8, noise=0.0, seed=3)
    np.testing.assert_allclose(bigger.iloc[:50].to_numpy(), clean.to_numpy(), rtol=1e-12)


def test_label_correlation_grows_with_the_knob() -> None:
    corr = [
        np.corrcoef(*mmoe_synthetic(20_000, p, dim=20, seed=0)[["y1", "y2"]].T.values)[0, 1]
        for p in (-1.0, 0.0, 0.5, 0.9, 1.0)
    ]
    assert corr[1] == pytest.approx(0.0, abs=0.03)
    assert corr[1] < corr[2] < corr[3] < corr[4]
    assert corr[4] > 0.98  # the same task up to the noise
    assert corr[0] < corr[1]


def test_noise_is_the_only_difference_at_p_1() -> None:
    df = mmoe_synthetic(5_000, 1.0, dim=10, noise=0.1, seed=1)
    diff = df["y1"] - df["y2"]
    assert diff.std() == pytest.approx(0.1 * np.sqrt(2), rel=0.05)


def test_bad_arguments_are_user_errors() -> None:
    with pytest.raises(PolytaskError, match="correlation"):
        mmoe_synthetic(10, 1.5)
    with pytest.raises(PolytaskError, match="dim"):
        mmoe_synthetic(10, 0.5, dim=1)


def test_competing_tasks_are_the_balancing_tests_problem() -> None:
    from polytask.datasets.synthetic import competing_tasks
    from tests.test_balancing_training import competing

    df = competing_tasks(200, seed=3)
    assert df.equals(competing(200, 3))
    # b is the scaled task: its spread is about 100 times a's
    assert 50 < df["b"].std() / df["a"].std() < 200
    with pytest.raises(PolytaskError, match="n must"):
        competing_tasks(0)
