"""balancing: auto: a successive-halving race of methods (tuned static weights among
them) on the validation split; the winner trains to the end and the race is kept."""

from __future__ import annotations

import json

import pytest

import polytask
from polytask import run_dir
from polytask.config import parse_config
from polytask.datasets.synthetic import COMPETING_TASKS, competing_tasks
from polytask.evaluation.layout import Variant, make_spec, variant_config
from polytask.evaluation.report import write_report

COMMON = dict(hidden=[32, 3], head_hidden=[16], dropout=0.0, norm="none", patience=None,
              lr=1e-2, weight_decay=0.0, batch_size=32, seed=0)  # fmt: skip


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("auto") / "run"
    df = competing_tasks(500, seed=0)
    balancing = {"method": "auto", "auto_budget": 32, "auto_methods": ["uw"], "auto_weights": 2}
    model = polytask.fit(df, COMPETING_TASKS, balancing=balancing, epochs=8, out=out, **COMMON)
    return model, out


def test_auto_picks_a_method_that_rescues_the_starved_task(auto_run) -> None:
    model, out = auto_run
    race = json.loads((out / run_dir.RACE).read_text())
    first = {r["entrant"]: r for r in race["rounds"][0]["results"]}
    assert set(first) == {"ew", "uw", "weights#1", "weights#2"}
    winner = race["winner"]["entrant"]
    assert winner != "ew" and model.config.balancing.method == race["winner"]["balancing"]["method"]
    # under ew the unscaled task a is starved: the winner's a error is far below ew's
    assert first[winner]["validation"]["a"]["mae"] < 0.95 * first["ew"]["validation"]["a"]["mae"]
    assert [r["epochs"] for r in race["rounds"]] == [4, 8]  # 32 entrant-epochs, 2 rounds
    assert model.info["balancing_race"]["winner"]["entrant"] == winner


def test_race_is_in_the_run_report(auto_run) -> None:
    _, out = auto_run
    page = write_report(out, plots=False).read_text()
    assert "Balancing: the auto race" in page and "weights#1" in page


def test_bad_auto_option_is_one_line() -> None:
    with pytest.raises(polytask.PolytaskError, match=r"auto_methods.*nope"):
        polytask.fit(competing_tasks(50, seed=0), COMPETING_TASKS,
                     balancing={"method": "auto", "auto_methods": ["nope"]})  # fmt: skip
    with pytest.raises(polytask.PolytaskError, match="unknown key 'auto_budjet'"):
        polytask.fit(competing_tasks(50, seed=0), COMPETING_TASKS,
                     balancing={"method": "auto", "auto_budjet": 3})  # fmt: skip


def test_compare_takes_the_tuned_weighted_sum_as_a_variant() -> None:
    cfg = parse_config({"tasks": COMPETING_TASKS})
    spec = make_spec(cfg, methods=["ew", "tuned_weights"], seeds=1)
    v = Variant("multi", "tuned_weights", "hard")
    assert v in spec.variants()
    bal = variant_config(cfg, v, 0).balancing
    assert bal.method == "auto" and bal.model_extra == {"auto_methods": [], "auto_weights": 4}
