"""``polytask tune --jobs 2``: two processes share one SQLite study and together finish
exactly the asked number of trials, each process's trials tagged with its worker id."""

from __future__ import annotations

import csv
import os
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from polytask.cli import main
from polytask.config import parse_config
from polytask.datasets.synthetic import COMPETING_TASKS, competing_tasks
from polytask.model import build_tasks
from polytask.tuning import study as study_mod
from polytask.tuning.objective import objective_of

optuna = pytest.importorskip("optuna")

TRIALS = 3


def _workers_started(db: Path) -> set[int]:
    """Worker ids of the trials in the study so far (tagged when a trial starts)."""
    try:
        with sqlite3.connect(db, timeout=30) as c:
            rows = c.execute("select value_json from trial_user_attributes where key = 'worker'")
            return {int(r[0]) for r in rows}
    except sqlite3.OperationalError:
        return set()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --jobs 2 study of TRIALS trials; this process's first trial waits until the
    spawned worker has started one, so that both take part however slow its start."""
    tmp = tmp_path_factory.mktemp("jobs")
    data, config, out = tmp / "data.csv", tmp / "tune.yaml", tmp / "study"
    competing_tasks(200, seed=0).to_csv(data, index=False)
    space = {"model.architecture": None, "model.hidden": None, "training.batch_size": None}
    config.write_text(yaml.safe_dump({"tune": {"pruner": "none", "space": space}}))
    real, calls = study_mod._train, []

    def train(*args):  # type: ignore[no-untyped-def]
        calls.append(time.monotonic())
        if len(calls) == 2:  # call 1 is the baseline
            deadline = time.monotonic() + 90
            while 1 not in _workers_started(out / "study.db") and time.monotonic() < deadline:
                time.sleep(0.2)
        return real(*args)

    mp = pytest.MonkeyPatch()
    mp.setattr(study_mod, "_train", train)  # this process only: the worker imports afresh
    argv = ["tune", "--data", str(data), "--config", str(config), "--task", "a:regression",
            "--task", "b:regression", "--epochs", "1", "--hidden", "8", "--batch-size", "64",
            "--out", str(out), "--trials", str(TRIALS), "--jobs", "2"]  # fmt: skip
    try:
        assert main(argv) == 0
    finally:
        mp.undo()
    return out


def test_two_workers_share_one_study_and_finish_the_asked_trials(shared: Path) -> None:
    db = shared / "study.db"
    assert [p.name for p in shared.glob("*.db")] == ["study.db"]
    storage = f"sqlite:///{db}"
    assert optuna.get_all_study_names(storage) == ["polytask"]
    trials = optuna.load_study(study_name="polytask", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * TRIALS
    assert [t.number for t in trials] == list(range(TRIALS))
    workers = {t.user_attrs["worker"] for t in trials}
    assert workers == {0, 1}  # both processes finished trials of the one study
    pids = {t.user_attrs["worker"]: t.user_attrs["pid"] for t in trials}
    assert pids[0] == os.getpid() and pids[1] != os.getpid()
    rows = list(csv.DictReader((shared / "trials.csv").open()))
    assert len(rows) == TRIALS and {r["state"] for r in rows} == {"COMPLETE"}


def test_counts_see_this_sessions_running_trials_not_a_killed_runs() -> None:
    """What a worker waits on: trials finished anywhere in the study, and running trials
    of its own session (or not yet tagged and created since it began); a killed earlier
    run's running trial is not waited on, tagged or not."""
    began = datetime.now()
    study = optuna.create_study()
    tags = [None, "old", "now", "now", None]
    asked = [study.ask() for _ in tags]
    for trial, tag in zip(asked, tags, strict=True):
        if tag is not None:
            trial.set_user_attr("session", tag)
    study.tell(asked[0], 1.0)
    study.tell(asked[2], state=optuna.trial.TrialState.PRUNED)
    # 0 complete, 2 pruned; running: 1 (old session), 3 (now), 4 (untagged)
    now = study_mod.Session("now", started=began)
    assert study_mod._counts(study, now) == (2, 2)
    assert study_mod._counts(study, now, before=4) == (2, 1)
    assert study_mod._counts(study, study_mod.Session("old", started=began)) == (2, 2)
    time.sleep(0.01)
    later = study_mod.Session("now")  # began after 4 was made: 4 is a gone command's
    assert study_mod._counts(study, later) == (2, 1)


def test_a_trial_past_the_asked_count_is_not_run() -> None:
    """Two workers that start a trial at the same instant: the later-numbered one sees the
    earlier running and fails at once, untrained, instead of overshooting the count."""
    cfg = parse_config({"tasks": COMPETING_TASKS})
    objective = objective_of("delta_m", build_tasks(cfg))
    baseline = {"losses": {}, "validation": {}}
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    ahead = study.ask()  # worker 0's trial, running
    ahead.set_user_attr("session", "s")
    late = study.ask()
    run = study_mod._trial_function(
        cfg, (None, None, None), objective, baseline, (2, 1, study_mod.Session("s"))
    )
    with pytest.raises(study_mod.Surplus, match="not run"):
        run(late)
    assert late.user_attrs == {"session": "s", "worker": 1, "pid": os.getpid()}  # untrained
