"""Entire-space tasks (ESMM): the product of two probabilities, trained on every row, and
the selection bias it removes on synthetic_rec."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import polytask
from polytask.datasets.synthetic_rec import oracle_auroc, synthetic_rec
from polytask.errors import PolytaskError
from polytask.tasks.entire_space import product_logit

FEATURES = [f"d{j}" for j in range(8)] + ["device"]
OPTIONS = dict(features=FEATURES, epochs=4, seed=0, progress=False, batch_size=512, hidden=[64, 32])


def test_product_logit_is_the_logit_of_the_product() -> None:
    a = torch.tensor([-30.0, -3.0, 0.0, 2.0, 25.0, 40.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.5, 0.0, -1.0, 30.0, 40.0], dtype=torch.float64)
    p = torch.sigmoid(a) * torch.sigmoid(b)
    got = torch.sigmoid(product_logit(a, b))
    assert torch.allclose(got, p.clamp(max=1 - 1e-7), rtol=1e-6, atol=1e-12)
    assert torch.isfinite(product_logit(a.float() * 100, b.float() * 100)).all()


@pytest.fixture(scope="module")
def logs():
    train = synthetic_rec(20_000, seed=1)[[*FEATURES, "click", "conversion"]]
    test = synthetic_rec(20_000, start=10**7, seed=1, oracle=True)
    return train, test


def test_esmm_beats_a_conversion_head_trained_on_clicked_rows(logs) -> None:
    """Over every impression, conversion is ranked by pCTCVR = pCTR x pCVR; a conversion
    head fitted on clicked rows only estimates pCVR and ranks them by that. The generator
    says how far apart the two are with the true probabilities (oracle_auroc); the trained
    models must show at least half of that margin."""
    train, test = logs
    esmm = polytask.fit(train, ["click:binary", "conversion:entire_space:after=click"], **OPTIONS)
    clicked = train.assign(conversion=train["conversion"].where(train["click"] == 1))
    naive = polytask.fit(clicked, ["click:binary", "conversion:binary"], **OPTIONS)
    y = test["conversion"]
    got_esmm = roc_auc_score(y, esmm.predict(test[FEATURES])["conversion_proba"])
    got_naive = roc_auc_score(y, naive.predict(test[FEATURES])["conversion_proba"])
    oracle = oracle_auroc(test)
    implied = oracle["entire_space"] - oracle["clicked_only"]
    assert implied > 0.15
    assert got_esmm - got_naive > 0.5 * implied, (got_esmm, got_naive, oracle)
    assert got_esmm < oracle["entire_space"]  # no model beats the true probabilities


def test_predictions_round_trip_and_columns(logs, tmp_path) -> None:
    train, _ = logs
    small = train.iloc[:3000]
    model = polytask.fit(
        small, ["click:binary", "conversion:entire_space:after=click"], **{**OPTIONS, "epochs": 1}
    )
    out = model.predict(small.iloc[:50])
    assert {"conversion", "conversion_proba", "conversion_cvr_proba"} <= set(out.columns)
    click = out["click_proba"].to_numpy()
    # pCTCVR is the product of pCTR and pCVR
    assert np.allclose(out["conversion_proba"], click * out["conversion_cvr_proba"], atol=1e-6)
    model.save(tmp_path / "run")
    again = polytask.load(tmp_path / "run").predict(small.iloc[:50])
    assert np.allclose(again["conversion_proba"], out["conversion_proba"], atol=1e-7)
    assert model.evaluate(small)["conversion"]["n"] == len(small)


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (["click:binary", "conversion:entire_space:after=clik"], "not one of the tasks"),
        (["click:regression", "conversion:entire_space:after=click"], "names a binary task"),
    ],
)
def test_bad_parent_is_one_line(logs, tasks, message) -> None:
    train, _ = logs
    with pytest.raises(PolytaskError, match=message):
        polytask.fit(train.iloc[:500], tasks, **{**OPTIONS, "epochs": 1})


def test_gradient_methods_refuse_composed_tasks(logs) -> None:
    train, _ = logs
    tasks = ["click:binary", "conversion:entire_space:after=click"]
    with pytest.raises(PolytaskError, match="loss-level balancing"):
        polytask.fit(train.iloc[:500], tasks, balancing="pcgrad", **{**OPTIONS, "epochs": 1})
