"""Checkpoints and resuming: a run killed mid-epoch (SIGKILL), stopped with Ctrl-C, or
crashed, and then resumed, ends exactly where an uninterrupted run with the same seed
ends. Tolerance: none, weights and metrics are bit-identical (CPU, one thread in both
processes; dropout on, so the random generators are restored too)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import polytask
from polytask import balancing, run_dir
from polytask.api import resume
from polytask.errors import PolytaskError
from polytask.training import Callback, TrainingDiverged
from polytask.training.checkpoint import (
    pack,
    read_checkpoint,
    unpack,
    write_checkpoint,
)
from polytask.training.early_stopping import EarlyStopping
from polytask.training.fit_state import LoopState
from tests.conftest import assert_user_error, call_cli, make_table

TASKS = ["--task", "y_reg:regression", "--task", "y_bin:binary", "--task", "y_cls:multiclass"]
CONFIG = """\
model: {hidden: [32], dropout: 0.2}
training: {epochs: 8, batch_size: 8, seed: 3, checkpoint_every: 10, patience: null}
"""


# -- the CLI killed and resumed ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("resume")
    make_table(1000, seed=0).to_csv(base / "d.csv", index=False)
    (base / "run.yaml").write_text(CONFIG, encoding="utf-8")
    return base


def _train_args(base: Path, out: Path) -> list[str]:
    return [
        "train", "--config", str(base / "run.yaml"), "--data", str(base / "d.csv"), *TASKS,
        "--drop", "id", "--quiet", "--no-report", "--out", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(cli_data: Path) -> Path:
    out = cli_data / "whole"
    result = call_cli(_train_args(cli_data, out))
    assert result.rc == 0, result.err
    return out


def _start_and_signal(base: Path, out: Path, sig: int) -> tuple[int, str, dict[str, Any]]:
    """Start training in a subprocess, wait for a checkpoint in the middle of epoch 2 or
    later, send ``sig``; returns the exit code, stderr and the checkpoint's counters."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "polytask", *_train_args(base, out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    commit = run_dir.partial_path(out) / run_dir.CHECKPOINT / "checkpoint.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "training ended before it could be interrupted"
            try:
                state = json.loads(commit.read_text())["state"]
            except (OSError, ValueError, KeyError):
                state = None
            if state and state["epoch"] >= 2 and state["step_in_epoch"] > 0:
                break
            time.sleep(0.005)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err, json.loads(commit.read_text())["state"]


def _assert_same_run(a: Path, b: Path) -> None:
    assert json.loads((a / "metrics.json").read_text()) == json.loads(
        (b / "metrics.json").read_text()
    )
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k

    def history(run: Path) -> list[dict[str, Any]]:
        lines = (run / "history.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]

    assert history(a) == history(b)
    assert not (b / run_dir.CHECKPOINT).exists() and not (b / run_dir.PARTIAL_INFO).exists()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(
    cli_data: Path, uninterrupted: Path
) -> None:
    out = cli_data / "killed"
    rc, _, state = _start_and_signal(cli_data, out, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert state["step_in_epoch"] > 0  # killed in the middle of an epoch
    assert not out.exists()  # an interrupted run is not a run
    assert_user_error(call_cli(["evaluate", out, "--data", cli_data / "d.csv"]), "--resume")
    result = call_cli(["train", "--resume", out, "--quiet", "--no-report"])
    assert result.rc == 0, result.err
    _assert_same_run(uninterrupted, out)
    assert not run_dir.partial_path(out).exists()


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_exits_130_and_resumes_exactly(
    cli_data: Path, uninterrupted: Path
) -> None:
    out = cli_data / "interrupted"
    rc, err, state = _start_and_signal(cli_data, out, signal.SIGINT)
    assert rc == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert f"polytask train --resume {out}" in lines[0]
    assert f"after step {state['step_in_epoch']} " in lines[0]  # saved where it stopped
    result = call_cli(["train", "--resume", out, "--quiet", "--no-report"])
    assert result.rc == 0, result.err
    _assert_same_run(uninterrupted, out)


# -- in process: a crash at any step, then resume ----------------------------------------------


class Crash(Exception):
    pass


class CrashAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_batch_end(self, trainer: Any, step: int, batch: Any) -> None:
        if step == self.step:
            raise Crash


FIT = dict(
    tasks=["y_reg:regression", "y_bin:binary", "y_cls:multiclass"],
    drop=["id"],
    hidden=[16],
    head_hidden=[8],
    dropout=0.2,
    epochs=3,
    batch_size=16,
    patience=None,
    checkpoint_every=7,
    seed=1,
)


@pytest.mark.parametrize(
    "balancing",
    [
        {"method": "uw"},
        {"method": "famo"},
        {"method": "pcgrad", "seed": 0},  # its generator's state is in the checkpoint
        {"method": "gradnorm"},
        {"method": "db_mtl"},
        {"method": "mgda", "jacobian": "representation"},
    ],
    ids=lambda b: b["method"],
)
def test_a_crashed_run_resumes_exactly(tmp_path: Path, balancing: dict[str, Any]) -> None:
    df = make_table(200, seed=2)
    whole = polytask.fit(df, balancing=balancing, out=tmp_path / "whole", **FIT)
    out = tmp_path / "crashed"
    with pytest.raises(Crash):  # at step 17 of 3 x 9: the checkpoint of step 14 stays
        polytask.api.train_run(
            polytask.build_config(balancing=balancing, **FIT),
            df,
            out=out,
            verbose=False,
            callbacks=[CrashAt(17)],
        )
    state = read_checkpoint(run_dir.partial_path(out) / run_dir.CHECKPOINT)
    assert state is not None and state["global_step"] == 14 and state["step_in_epoch"] == 5
    resumed = resume(out, data=df, verbose=False)
    assert resumed.metrics == whole.metrics
    for k, v in whole.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    assert [r["train"] for r in resumed.history] == [r["train"] for r in whole.history]


def test_resume_before_the_first_checkpoint_starts_over(tmp_path: Path) -> None:
    df = make_table(120, seed=2)
    cfg = polytask.build_config(**{**FIT, "checkpoint_every": None})
    with pytest.raises(Crash):
        polytask.api.train_run(cfg, df, out=tmp_path / "r", verbose=False, callbacks=[CrashAt(2)])
    assert not run_dir.partial_path(tmp_path / "r").exists()  # nothing to resume: removed


# -- non-finite losses -----------------------------------------------------------------------------


class Poison(Callback):
    """From ``step`` on, the second task's head outputs NaN."""

    def __init__(self, step: int):
        self.step = step

    def on_batch_begin(self, trainer: Any, step: int, batch: Any) -> None:
        if step == self.step:
            with torch.no_grad():
                for p in trainer.net.head_modules()[1].parameters():
                    p.fill_(math.nan)


def test_a_non_finite_loss_names_task_and_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    df = make_table(200, seed=2)
    cfg = polytask.build_config(**{**FIT, "checkpoint_every": 3})
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged) as err:
        polytask.api.train_run(cfg, df, out=out, verbose=False, callbacks=[Poison(8)])
    message = str(err.value)
    assert "'y_bin'" in message and "at step 8 " in message and "\n" not in message
    assert "(step 6)" in message  # the last checkpoint before the NaN
    partial = run_dir.partial_path(out)
    state = read_checkpoint(partial / run_dir.CHECKPOINT)
    assert state is not None and state["global_step"] == 6
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values())
    assert not out.exists()
    with pytest.raises(PolytaskError, match="did not finish"):
        polytask.load(out)


# -- the CLI around resuming -------------------------------------------------------------------


@pytest.fixture
def crashed_cli_run(tmp_path: Path) -> tuple[Path, Path]:
    """An unfinished run of a data file (as the CLI makes), crashed after a checkpoint."""
    data = tmp_path / "d.csv"
    make_table(150, seed=4).to_csv(data, index=False)
    out = tmp_path / "run"
    cfg = polytask.build_config(**FIT)
    cfg.data.path = str(data)
    with pytest.raises(Crash):
        polytask.api.train_run(cfg, out=out, verbose=False, callbacks=[CrashAt(10)])
    return data, out


def test_cli_resume_rules(crashed_cli_run: tuple[Path, Path]) -> None:
    data, out = crashed_cli_run
    partial = run_dir.partial_path(out)
    assert run_dir.has_checkpoint(partial)
    # a new run of the same RUN_DIR does not silently replace the unfinished one
    fresh = ["train", "--data", data, *TASKS, "--drop", "id", "--quiet", "--no-report"]
    assert_user_error(call_cli([*fresh, "--out", out]), "--resume", "--overwrite")
    # the saved config is kept: a flag that changes it is an error; repeating it is not
    assert_user_error(call_cli(["train", "--resume", out, "--epochs", "9"]), "training.epochs")
    assert_user_error(call_cli(["train", "--resume", out, "--out", out.parent / "x"]), "--out")
    result = call_cli(["train", "--resume", partial, "--epochs", "3", "--quiet", "--no-report"])
    assert result.rc == 0, result.err
    assert polytask.load(out).info["epochs_run"] == 3
    assert_user_error(call_cli(["train", "--resume", out]), "already finished")
    assert_user_error(call_cli(["train", "--resume", out.parent / "nope"]), "no unfinished run")


def test_overwrite_discards_an_unfinished_run(crashed_cli_run: tuple[Path, Path]) -> None:
    data, out = crashed_cli_run
    args = ["train", "--data", data, *TASKS, "--drop", "id", "--epochs", "1", "--quiet"]
    result = call_cli([*args, "--no-report", "--out", out, "--overwrite"])
    assert result.rc == 0, result.err
    assert not run_dir.partial_path(out).exists()
    assert polytask.load(out).info["epochs_run"] == 1


# -- the checkpoint files ----------------------------------------------------------------------


def test_checkpoint_round_trip_is_exact_and_atomic(tmp_path: Path) -> None:
    state = {
        "global_step": 5,
        "w": torch.randn(3, 2),
        "nested": {"a": [1, 2.5, math.inf, -math.inf, None, "x"], "t": torch.arange(4)},
        "arr": np.arange(6, dtype=np.float64).reshape(2, 3),
        "nan": math.nan,
    }
    folder = tmp_path / "ck"
    write_checkpoint(folder, state)
    state["global_step"] = 6
    write_checkpoint(folder, state)
    assert len(list(folder.glob("state-*.safetensors"))) == 1  # the old tensors are gone
    back = read_checkpoint(folder)
    assert back is not None and back["global_step"] == 6
    assert torch.equal(back["w"], state["w"]) and torch.equal(back["nested"]["t"], torch.arange(4))
    assert back["nested"]["a"] == [1, 2.5, math.inf, -math.inf, None, "x"]
    assert np.array_equal(back["arr"], state["arr"]) and math.isnan(back["nan"])
    commit = json.loads((folder / "checkpoint.json").read_text())  # strict JSON, no pickle
    assert commit["format"] == "polytask-checkpoint"
    # a tensors file of another checkpoint is detected, not silently mixed in
    other = tmp_path / "other"
    write_checkpoint(other, state)
    (folder / commit["tensors_file"]).unlink()
    next(other.glob("state-*")).rename(folder / commit["tensors_file"])
    with pytest.raises(PolytaskError, match="another checkpoint"):
        read_checkpoint(folder)


# -- balancer state ------------------------------------------------------------------------------

STATEFUL = {"uw", "dwa", "famo", "rlw", "gradnorm", "db_mtl", "pcgrad", "graddrop", "gradvac",
            "nash_mtl"}  # fmt: skip


def _balancer(name: str) -> balancing.Balancer:
    opts = {"weights": {"a": 1.0, "b": 2.0, "c": 0.5}} if name == "weights" else {}
    bal = balancing.get(name, **opts)
    bal.setup(["a", "b", "c"])
    return bal


def _steps(bal: balancing.Balancer, seed: int, n: int = 3) -> list[np.ndarray]:
    """A few steps on seeded inputs; returns what the method produced each step."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        losses = (torch.rand(3, generator=gen, dtype=torch.float64) + 0.1).tolist()
        if bal.level == "gradient":
            g = torch.randn(3, 7, generator=gen, dtype=torch.float64)
            d = bal.aggregate(g, [0, 1, 2], losses if bal.needs_losses else None)
            out.append(d.numpy().copy())
        else:
            ls = [torch.tensor(v, dtype=torch.float64) for v in losses]
            out.append(np.array(float(bal.combine(ls).detach())))
            bal.after_update(lambda ls=ls: [v * 0.9 for v in ls])
            bal.end_epoch(dict(zip(["a", "b", "c"], losses, strict=True)))
        out.append(np.array(list(bal.weights().values()), dtype=np.float64))
    return out


@pytest.mark.parametrize("name", sorted(balancing.METHODS))
def test_balancer_state_dict_round_trips_through_a_checkpoint(name: str, tmp_path: Path) -> None:
    bal = _balancer(name)
    _steps(bal, seed=0)
    write_checkpoint(tmp_path, {"global_step": 1, "balancer": bal.state_dict()})
    saved = read_checkpoint(tmp_path)
    assert saved is not None
    fresh = _balancer(name)
    fresh.load_state_dict(saved["balancer"])
    if name in STATEFUL:
        assert set(saved["balancer"]) - {"last_weights"}  # it has state to keep
    a, b = _steps(bal, seed=1), _steps(fresh, seed=1)  # both continue alike
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_pack_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        pack({"f": object()}, {})
    tensors: dict[str, torch.Tensor] = {}
    assert unpack(pack({"x": [1.0, {"y": torch.ones(2)}]}, tensors), tensors)["x"][0] == 1.0


def test_loop_counters_go_through_their_dataclass_fields(tmp_path: Path) -> None:
    """Every field of LoopState and EarlyStopping reaches the checkpoint and comes back
    with its type (a new field needs no other line), and the keys stay flat."""
    loop = LoopState(epoch=4, step_in_epoch=3, finished=True, seconds=1.5, history=[{"a": 1}])
    early = EarlyStopping(patience=2, min_delta=0.0, best=0.25, best_epoch=2, since_best=1)
    write_checkpoint(tmp_path, {"global_step": 7, **loop.state_dict(), **early.state_dict()})
    state = read_checkpoint(tmp_path)
    assert state is not None
    assert {f.name for f in fields(LoopState)} | {f.name for f in fields(EarlyStopping)} <= set(
        state
    )
    loop2, early2 = LoopState(), EarlyStopping(patience=2)
    loop2.load_state_dict(state)
    early2.load_state_dict({**state, "best_epoch": 2.0})  # an int written as a float
    assert loop2 == loop and early2 == early
    assert type(early2.best_epoch) is int and type(loop2.seconds) is float
    assert early2.best == 0.25 and EarlyStopping().best == math.inf
