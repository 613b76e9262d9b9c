"""polytask tune: a study in OUT/study.db (resumable, shared), best.yaml that train
reproduces, the trials table, the report; the tune section's schema."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import polytask
from polytask.cli import main
from polytask.config import load_config, parse_config
from polytask.datasets.synthetic import COMPETING_TASKS, competing_tasks

pytest.importorskip("optuna")

TINY = dict(epochs=2, hidden=[8], patience=None, batch_size=64, seed=0)


@pytest.fixture(scope="module")
def data():
    return competing_tasks(240, seed=0)


def _finished(db: Path) -> int:
    """Complete and pruned trials in the study (0 while Optuna is still creating it)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as c:
            rows = c.execute("select count(*) from trials where state in ('COMPLETE', 'PRUNED')")
            return int(rows.fetchone()[0])
    except sqlite3.OperationalError:  # no table yet
        return 0


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, data):
    """A study killed with SIGKILL after a finished trial or more, resumed by the same command
    to 2 more: (its folder, trials finished when killed)."""
    tmp = tmp_path_factory.mktemp("tune")
    out, csv_path = tmp / "study", tmp / "data.csv"
    data.to_csv(csv_path, index=False)
    cmd = [sys.executable, "-m", "polytask", "tune", "--data", str(csv_path),
           "--task", "a:regression", "--task", "b:regression", "--epochs", "1",
           "--hidden", "8", "--out", str(out), "--trials", "50"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(polytask.__file__).parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _finished(out / "study.db") < 1:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _finished(out / "study.db")
    assert main(["tune", *cmd[4:-1], str(killed_at + 2)]) == 0
    return out, killed_at


def test_killed_study_resumes_to_the_asked_count(resumed) -> None:
    out, killed_at = resumed
    assert 1 <= killed_at < 50
    assert _finished(out / "study.db") == killed_at + 2
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == list(range(len(rows)))
    assert len(rows) >= killed_at + 2 and "training.lr" in rows[0]


def test_best_yaml_trains_the_best_trial_again(resumed, data) -> None:
    out, _ = resumed
    cfg = load_config(out / "best.yaml")
    again = polytask.api.train_run(cfg, verbose=False)  # the data path is in best.yaml
    import optuna

    study = optuna.load_study(study_name="polytask", storage=f"sqlite:///{out / 'study.db'}")
    assert again.metrics["validation"] == study.best_trial.user_attrs["validation"]
    page = (out / "report.html").read_text()
    assert "Optimisation history" in page and "Parameter importances" in page


def test_a_trial_whose_process_died_before_its_first_heartbeat_is_not_waited_for(
    tmp_path, data, monkeypatch
) -> None:
    """A process killed between creating a trial and tagging it leaves the trial running
    with no heartbeat, which Optuna never fails: the resumed study neither counts it as
    its own nor waits for it, and a later look fails it once it is old enough."""
    import optuna

    from polytask.tuning import study as study_mod

    cfg = polytask.build_config(None, COMPETING_TASKS, **(TINY | {"epochs": 1})).to_dict()
    out = tmp_path / "s"
    polytask.tune(cfg, out=out, trials=1, data=data)
    study = optuna.load_study(study_name="polytask", storage=study_mod.storage(out))
    study.ask()  # the dead process's trial: running, untagged, never beating
    started = time.monotonic()
    polytask.tune(cfg, out=out, trials=3, data=data, timeout=60)  # before the fix: 60 s, 2
    assert time.monotonic() - started < 50
    states = [t.state.name for t in study.get_trials()]
    assert states.count("COMPLETE") == 3 and states.count("RUNNING") == 1
    monkeypatch.setattr(study_mod, "LOCK_WAIT_SECONDS", -30)  # as if it were old now
    assert study_mod.fail_orphans(study) == 1
    assert [t.state.name for t in study.get_trials()].count("RUNNING") == 0


def test_pareto_study_draws_the_front(tmp_path, data) -> None:
    cfg = polytask.build_config(None, COMPETING_TASKS, **(TINY | {"epochs": 1})).to_dict()
    cfg["tune"] = {"objective": "pareto", "space": {"model.architecture": None}}
    res = polytask.tune(cfg, out=tmp_path / "p", trials=2, data=data)
    assert len(res.best_values) == 2  # one objective per task
    page = (tmp_path / "p" / "report.html").read_text()
    assert "Pareto front" in page and "trials on the front" in page


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"space": {"training.lrr": {"low": 1e-4, "high": 1e-2}}}, "'training.lrr'.*training.lr"),
        ({"space": {"balancing.dwa.temp": {"low": 1, "high": 2}}}, "no option 'temp'"),
        ({"space": {"data.path": {"choices": ["x.csv"]}}}, "not a config key a trial can set"),
        ({"objective": "c.mae"}, "tune.objective"),
    ],
)
def test_bad_tune_entry_is_one_line(tmp_path, data, tune, message) -> None:
    cfg = polytask.build_config(None, COMPETING_TASKS, **TINY).to_dict() | {"tune": tune}
    with pytest.raises(polytask.PolytaskError, match=message):
        polytask.tune(cfg, out=tmp_path / "s", trials=1, data=data)


def test_schema_checks_a_range() -> None:
    with pytest.raises(polytask.PolytaskError, match=r"tune.space.training.lr.*low"):
        parse_config({"tune": {"space": {"training.lr": {"low": 0.1, "high": 0.01}}}})


def test_cli_needs_out_and_a_stop(capsys) -> None:
    assert main(["tune", "--task", "a:regression", "--data", "x.csv"]) == 2
    assert "tune needs --out" in capsys.readouterr().err
