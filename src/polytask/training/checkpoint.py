"""Training checkpoints: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a folder (``RUN_DIR.partial/checkpoint/``) with two files::

    checkpoint.json                   epoch, step, history, scheduler, balancer, ... (JSON)
    state-<step>-<id>.safetensors     weights, optimiser moments, best weights, RNG states,
                                      balancer tensors

Each file is written to a temporary name, fsync'ed and renamed. ``checkpoint.json`` is
written last and names its tensors file (and the id stored in that file's metadata), so
it is the commit point: whatever moment a process dies, ``checkpoint.json`` describes a
complete checkpoint. Older tensors files are removed after the commit. Nothing is
pickled: a state is nested dicts and lists of JSON values and tensors; :func:`pack` moves
the tensors out into a flat ``{name: tensor}`` map and leaves ``{"$tensor": name}`` in
their place (non-finite floats become ``{"$float": "inf"}``).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file
from safetensors.torch import save as save_bytes

from polytask import io
from polytask.errors import PolytaskError

if TYPE_CHECKING:
    from polytask.balancing.base import Balancer
    from polytask.training.distributed import DistContext

FORMAT = "polytask-checkpoint"
VERSION = 1
COMMIT = "checkpoint.json"
_TENSORS = "state-{step:09d}-{token}.safetensors"


# -- nested state <-> JSON + tensors ---------------------------------------------------------


def pack(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """A JSON-able copy of ``obj``; its tensors (and numpy arrays) go into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu").clone().contiguous()
        return {"$tensor": path}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"$ndarray": path}
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"state keys must be strings, got {k!r} at '{path}'")
            out[k] = pack(v, tensors, f"{path}.{k}" if path else k)
        return out
    if isinstance(obj, (list, tuple)):
        return [pack(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"$float": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at '{path}' in a checkpoint")


def unpack(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of :func:`pack`."""
    if isinstance(obj, dict):
        if len(obj) == 1:
            key, value = next(iter(obj.items()))
            if key == "$tensor":
                return tensors[value]
            if key == "$ndarray":
                return tensors[value].numpy()
            if key == "$float":
                return float(value)
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    return obj


def to_bytes(state: Mapping[str, Any]) -> bytes:
    """One self-describing blob (safetensors with the JSON in its metadata), for sending a
    state between processes."""
    tensors: dict[str, torch.Tensor] = {}
    meta = pack(state, tensors)
    return save_bytes(tensors, metadata={"format": FORMAT, "json": json.dumps(meta)})


def from_bytes(data: bytes) -> dict[str, Any]:
    """The inverse of :func:`to_bytes`."""
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return unpack(json.loads(header["__metadata__"]["json"]), load_bytes(data))


def share_initial_state(ctx: DistContext, net: torch.nn.Module, balancer: Balancer) -> None:
    """Every process starts from process 0's weights and balancer state (e.g. the
    generator of a method seeded at random)."""
    ctx.broadcast_module(net)
    blob = to_bytes(balancer.state_dict()) if ctx.is_main else None
    balancer.load_state_dict(from_bytes(ctx.broadcast_bytes(blob)))


# -- pieces of a training state ------------------------------------------------------------


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every random number generator training may draw from: torch's global CPU generator
    (dropout on CPU), CUDA's (dropout on GPU), numpy's and Python's global ones."""
    np_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": np_state[0],
            "keys": np.asarray(np_state[1], dtype=np.int64),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_random_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _python_random_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": list(internal), "gauss": gauss}


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = np.asarray(n["keys"], dtype=np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def restore_rng(state: Mapping[str, Any], device: torch.device, ctx: DistContext | None) -> None:
    """A training state's generators; in several processes each takes its own dropout
    generators back (saved by rank)."""
    set_rng_state(state["rng"], device)
    if ctx is None:
        return
    ranks = state.get("rng_ranks")
    if ranks is not None and ctx.rank < len(ranks):
        torch.set_rng_state(ranks[ctx.rank])
    cuda = state.get("cuda_rng_ranks")
    if cuda is not None and ctx.rank < len(cuda) and device.type == "cuda":
        torch.cuda.set_rng_state(cuda[ctx.rank], device)


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with string keys (JSON objects have no integer keys)."""
    sd = optimizer.state_dict()
    return {
        "state": {str(k): dict(v) for k, v in sd["state"].items()},
        "param_groups": [dict(g) for g in sd["param_groups"]],
    }


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    groups = []
    for g in state["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict(
        {"state": {int(k): dict(v) for k, v in state["state"].items()}, "param_groups": groups}
    )


def scheduler_state(scheduler: Any) -> dict[str, Any] | None:
    """A scheduler's ``state_dict()``: plain numbers and lists for torch's schedulers (the
    lambda of LambdaLR is left out by torch itself and rebuilt from the config)."""
    return None if scheduler is None else dict(scheduler.state_dict())


# -- the checkpoint folder -------------------------------------------------------------------


def write_checkpoint(folder: Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (nested JSON values and tensors; it must hold ``global_step``) as
    the folder's checkpoint, atomically; returns the commit file."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    meta = pack(state, tensors)
    token = secrets.token_hex(4)
    name = _TENSORS.format(step=int(state["global_step"]), token=token)
    with io.atomic_path(folder / name, durable=True) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "id": token})
    commit = {
        "format": FORMAT,
        "version": VERSION,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tensors_file": name,
        "tensors_id": token,
        "state": meta,
    }
    io.write_json(folder / COMMIT, commit, indent=None, durable=True)
    for old in folder.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / COMMIT


def read_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The folder's committed checkpoint state, or None if it has none."""
    path = folder / COMMIT
    if not path.is_file():
        return None
    try:
        commit = json.loads(path.read_text(encoding="utf-8"))
        if commit.get("format") != FORMAT:
            raise ValueError("not a polytask checkpoint")
        if commit.get("version") != VERSION:
            raise ValueError(f"checkpoint version {commit.get('version')} (expected {VERSION})")
        tensors_path = folder / commit["tensors_file"]
        with safe_open(str(tensors_path), framework="pt") as f:
            if (f.metadata() or {}).get("id") != commit["tensors_id"]:
                raise ValueError("its tensors file belongs to another checkpoint")
        tensors = load_file(str(tensors_path))
    except (OSError, ValueError, KeyError) as err:
        raise PolytaskError(
            f"the checkpoint in '{folder}' cannot be read ({err}); start the run again "
            "with `overwrite=True`"
        ) from None
    return unpack(commit["state"], tensors)


def clean_stale(folder: Path) -> None:
    """Remove temporary files and tensors files no committed checkpoint names (left by a
    process that died while writing)."""
    if not folder.is_dir():
        return
    keep = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        keep = json.loads((folder / COMMIT).read_text(encoding="utf-8"))["tensors_file"]
    for f in folder.iterdir():
        if f.name.endswith(".tmp") or (f.name.startswith("state-") and f.name != keep):
            f.unlink(missing_ok=True)


class Checkpointer:
    """When to write checkpoints, and where: every ``every_steps`` optimiser steps, when
    ``every_seconds`` passed since the last one, and at every epoch end. ``folder=None``
    keeps the schedule without writing (processes other than rank 0)."""

    def __init__(
        self,
        folder: Path | None,
        every_steps: int | None = None,
        every_seconds: float | None = None,
        info: Mapping[str, Any] | None = None,
    ):
        self.folder = folder
        #: stored with every checkpoint (e.g. the config's hash), checked when resuming
        self.info = dict(info or {})
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self._last = time.monotonic()
        #: global step of the last checkpoint written (or resumed from)
        self.last_step: int | None = None

    def due_steps(self, global_step: int) -> bool:
        return self.every_steps is not None and global_step % self.every_steps == 0

    def due_time(self) -> bool:
        return (
            self.every_seconds is not None and time.monotonic() - self._last >= self.every_seconds
        )

    def due(self, global_step: int) -> bool:
        """Whether a checkpoint is due after this step (cheap: called every step)."""
        return self.due_steps(global_step) or self.due_time()

    def save(self, state: Mapping[str, Any]) -> None:
        if self.folder is not None:
            write_checkpoint(self.folder, {**state, "info": self.info})
        self._last = time.monotonic()
        self.last_step = int(state["global_step"])

    def load(self) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        clean_stale(self.folder)
        state = read_checkpoint(self.folder)
        if state is not None:
            self.last_step = int(state["global_step"])
        return state
