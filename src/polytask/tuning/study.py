"""The study of ``polytask tune``: an Optuna study in ``OUT/study.db`` (SQLite), so a
killed study resumes where it stopped and several processes (``jobs``) share it.

The first process trains the default config once (the baseline: Δm's reference and the
scale of the tuned weights) and stores it in the study; every trial then draws a config
from the search space (:mod:`polytask.tuning.space`), trains it on the train split and
is scored on the validation split (:mod:`polytask.tuning.objective`). Trials count
when complete or pruned; a trial of a killed process is failed by Optuna's heartbeat, or,
where the process died before its first heartbeat, when a later command finds it.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from polytask import api
from polytask.config import RunConfig, parse_config
from polytask.config.tune import TuneConfig
from polytask.errors import PolytaskError
from polytask.model import MultiTaskModel, build_tasks
from polytask.prepare import read_frames
from polytask.training.divergence import TrainingDiverged
from polytask.tuning.objective import Objective, Pruning, objective_of
from polytask.tuning.space import search_space

STUDY_DB = "study.db"
STUDY_NAME = "polytask"
#: seconds without a heartbeat after which a running trial's process counts as dead
GRACE_SECONDS = 20
#: the longest a writer waits for another's SQLite lock
LOCK_WAIT_SECONDS = 120
Frames = tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None]


def optuna_module() -> Any:
    try:
        import optuna
    except ImportError:
        raise PolytaskError(
            "polytask tune needs Optuna; install it with pip install 'polytask[tune]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the heartbeat (a killed trial is failed) is marked experimental; it is what we need
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage(out: Path) -> Any:
    """The SQLite storage; writers wait up to 2 minutes for each other's locks, and a
    trial whose process died is failed after its heartbeat stops for 20 seconds."""
    optuna = optuna_module()
    return optuna.storages.RDBStorage(
        f"sqlite:///{(out / STUDY_DB).resolve()}",
        engine_kwargs={"connect_args": {"timeout": LOCK_WAIT_SECONDS}},
        heartbeat_interval=5,
        grace_period=GRACE_SECONDS,
    )


def trial_config(cfg: RunConfig) -> dict[str, Any]:
    """What every trial starts from: the config without its tune section, with the
    trial epochs and no progress bar."""
    data = cfg.to_dict()
    data.pop("tune", None)
    tune = cfg.tune or TuneConfig()
    if tune.epochs is not None:
        data["training"]["epochs"] = tune.epochs
    data["training"]["progress"] = False
    data["training"]["report"] = False
    return data


def _val_losses(model: MultiTaskModel) -> dict[str, float]:
    best = model.info.get("best_epoch")
    for record in model.history:
        if record.get("epoch") == best and "validation" in record:
            return dict(record["validation"]["loss"])
    return {}


def _train(data: dict[str, Any], frames: Frames, callbacks: list[Any]) -> dict[str, Any]:
    cfg = parse_config(data, where="trial config")
    model = api.train_run(cfg, *frames, verbose=False, callbacks=callbacks)
    return {
        "config": cfg.to_dict(),
        "validation": model.metrics.get("validation", {}),
        "losses": _val_losses(model),
        "seconds": float(model.info.get("train_seconds") or 0.0),
        "epochs_run": model.info.get("epochs_run"),
    }


def open_study(out: Path, cfg: RunConfig, objective: Objective, overwrite: bool) -> Any:
    """Create the study, or load it (its config must be this one)."""
    optuna = optuna_module()
    tune = cfg.tune or TuneConfig()
    key = json.dumps({"config": trial_config(cfg), "tune": tune.model_dump(mode="json")})
    db = out / STUDY_DB
    if overwrite and db.exists():
        db.unlink()
    if not db.exists() and out.exists() and any(out.iterdir()) and not overwrite:
        raise PolytaskError(f"'{out}' exists and holds no study; choose another `out`")
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=storage(out),
        study_name=STUDY_NAME,
        directions=objective.directions,
        load_if_exists=True,
    )
    if study.user_attrs.get("key", key) != key:
        raise PolytaskError(
            f"'{out}' holds a study of another config or tune section; use another `out`, "
            "or `overwrite=True` to start again"
        )
    study.set_user_attr("key", key)
    return study


def finished(study: Any) -> int:
    states = (study_state("COMPLETE"), study_state("PRUNED"))
    return len(study.get_trials(deepcopy=False, states=states))


def study_state(name: str) -> Any:
    return getattr(optuna_module().trial.TrialState, name)


class Surplus(PolytaskError):
    """A trial started while earlier trials of the session already make the asked count."""


@dataclass(frozen=True)
class Session:
    """The workers of one tune command: the id each of its trials is tagged with, and
    when the command began (Optuna's naive local time, as in ``datetime_start``)."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: datetime = field(default_factory=datetime.now)

    def owns(self, trial: Any) -> bool:
        """Whether a running trial is this session's. One not yet tagged is, if it was
        created since the command began (its worker tags it an instant later); one
        created before belongs to a command that is gone."""
        tag = trial.user_attrs.get("session")
        if tag is not None:
            return bool(tag == self.id)
        return trial.datetime_start is None or trial.datetime_start >= self.started


def _counts(study: Any, session: Session, before: int | None = None) -> tuple[int, int]:
    """Trials finished in the whole study, and trials of this session still running
    (those numbered below ``before`` if given)."""
    done = running = 0
    for t in study.get_trials(deepcopy=False):
        if t.state.name in ("COMPLETE", "PRUNED"):
            done += 1
        elif t.state.name == "RUNNING" and session.owns(t):
            running += before is None or t.number < before
    return done, running


def fail_orphans(study: Any) -> int:
    """Fail stale trials: Optuna's heartbeat check, and the running trials whose process
    died between creating them and tagging them (before its first heartbeat, which
    Optuna never fails): untagged for longer than a live worker could be, waiting for
    SQLite's lock and then the grace period. Returns how many of the latter."""
    optuna_module().storages.fail_stale_trials(study)
    cutoff = datetime.now() - timedelta(seconds=LOCK_WAIT_SECONDS + GRACE_SECONDS)
    orphans = [
        t
        for t in study.get_trials(deepcopy=False, states=(study_state("RUNNING"),))
        if "session" not in t.user_attrs
        and t.datetime_start is not None
        and t.datetime_start < cutoff
    ]
    for t in orphans:
        study._storage.set_trial_state_values(t._trial_id, state=study_state("FAIL"))
    return len(orphans)


def _trial_function(
    cfg: RunConfig,
    frames: Frames,
    objective: Objective,
    baseline: dict[str, Any],
    stop: tuple[int | None, int, Session],
) -> Any:
    tune = cfg.tune or TuneConfig()
    space = search_space(tune.space)
    base = trial_config(cfg)
    prune = tune.pruner != "none" and not objective.multi
    trials, worker, session = stop

    def run(trial: Any) -> Any:
        from polytask.tuning.space import draw

        for k, v in (("session", session.id), ("worker", worker), ("pid", os.getpid())):
            trial.set_user_attr(k, v)  # which process ran it (--jobs)
        if trials is not None and sum(_counts(trial.study, session, trial.number)) >= trials:
            raise Surplus("the study had its trials when this one started (not run)")
        data = draw(trial, space, base, baseline["losses"])
        callbacks = [Pruning(trial, objective, baseline["validation"])] if prune else []
        result = _train(data, frames, callbacks)
        values = objective.values(result["validation"], result["losses"], baseline["validation"])
        for k in ("config", "validation", "seconds", "epochs_run"):
            trial.set_user_attr(k, result[k])
        if any(not math.isfinite(v) for v in values):
            raise PolytaskError("the objective is undefined on validation for this trial")
        return values if objective.multi else values[0]

    return run


def work(
    out: Path,
    cfg: RunConfig,
    frames: Frames,
    trials: int | None,
    timeout: float | None,
    worker: int = 0,
    session: Session | None = None,
) -> None:
    """One process's share of the study: trials until ``trials`` have finished in the
    whole study, or ``timeout`` seconds passed. A trial starts only while the finished
    trials and those the session's workers are running fall short of ``trials``; while
    they do not, the worker waits (a running trial may yet fail)."""
    optuna = optuna_module()
    tune = cfg.tune or TuneConfig()
    objective = objective_of(tune.objective, build_tasks(cfg))
    sampler = optuna.samplers.TPESampler(seed=tune.seed + worker)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials, n_warmup_steps=1)
    study = optuna.load_study(
        study_name=STUDY_NAME, storage=storage(out), sampler=sampler, pruner=pruner
    )
    session = session or Session()
    stop = (trials, worker, session)
    run = _trial_function(cfg, frames, objective, study.user_attrs["baseline"], stop)
    catch = (PolytaskError, TrainingDiverged)
    if trials is None:
        study.optimize(run, timeout=timeout, catch=catch)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        done, running = _counts(study, session)
        if done >= trials:
            return
        if done + running >= trials:
            fail_orphans(study)  # a worker that died
            time.sleep(0.5)
            continue
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        study.optimize(run, n_trials=1, timeout=left, catch=catch)


def _work_in_child(out: Path, *args: Any) -> None:
    """A worker process: it starts while the first process trains the baseline, and
    waits for it (or leaves, if the first process died)."""
    import torch

    torch.set_num_threads(1)
    parent = os.getppid()
    study = optuna_module().load_study(study_name=STUDY_NAME, storage=storage(out))
    while "baseline" not in study.user_attrs:
        if os.getppid() != parent:
            return
        time.sleep(0.5)
    work(out, *args)


def run_study(
    cfg: RunConfig,
    out: Path,
    frames: Frames | None,
    trials: int | None,
    timeout: float | None,
    jobs: int,
    overwrite: bool,
) -> Any:
    """Open (or resume) the study, train the baseline once (the other ``jobs - 1``
    processes start meanwhile), run the trials in all of them; returns the study."""
    if trials is None and timeout is None:
        raise PolytaskError("give `trials` or `timeout` (or both): when the study stops")
    if jobs < 1:
        raise PolytaskError(f"`jobs` must be at least 1, got {jobs}")
    tune = cfg.tune or TuneConfig()
    objective = objective_of(tune.objective, build_tasks(cfg))
    search_space(tune.space)  # a bad entry fails before any work
    frames = read_frames(cfg.data, *(frames or (None, None, None)))
    study = open_study(out, cfg, objective, overwrite)
    fail_orphans(study)
    session = Session()  # this command's workers (not a killed run's trials)
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=_work_in_child, args=(out, cfg, frames, trials, timeout, w, session))
        for w in range(1, jobs)
    ]
    for c in children:  # they start (import, load the study) while the baseline trains
        c.start()
    try:
        if "baseline" not in study.user_attrs:
            try:
                baseline = _train(trial_config(cfg), frames, [])
            except BaseException:
                for c in children:
                    c.terminate()
                raise
            study.set_user_attr("baseline", baseline)
        work(out, cfg, frames, trials, timeout, 0, session)
    finally:
        for c in children:
            c.join()
    return study
