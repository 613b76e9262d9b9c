"""The search space of ``polytask tune``: the default one for multi-task learning, the
config's ``tune.space`` overrides, and drawing one trial's config from it.

Keys are config keys (``training.lr``), a balancing method's option under
``balancing.METHOD.OPTION`` (drawn only when that method is), or ``balancing.weights``:
the tuned weighted sum's per-task weights, each m_t drawn on a log scale and divided by
the task's validation loss under the default config (so 1 puts every task on one scale).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from polytask.balancing import METHODS
from polytask.config.keys import fields
from polytask.config.tune import ParamSpec
from polytask.errors import PolytaskError, did_you_mean

WEIGHTS = "balancing.weights"

DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "balancing.method": {"choices": ["ew", "weights", "uw", "dwa", "famo", "db_mtl", "cagrad"]},
    WEIGHTS: {"low": 0.1, "high": 10.0, "log": True},
    "balancing.dwa.temperature": {"low": 0.5, "high": 5.0, "log": True},
    "balancing.famo.gamma": {"low": 1e-5, "high": 1e-1, "log": True},
    "balancing.db_mtl.beta": {"low": 0.5, "high": 0.99},
    "balancing.cagrad.c": {"low": 0.1, "high": 0.9},
    "model.architecture": {"choices": ["hard", "mmoe"]},
    "model.hidden": {"choices": [[64], [128, 64], [256, 128], [512, 256]]},
    "model.dropout": {"low": 0.0, "high": 0.5},
    "training.lr": {"low": 3e-4, "high": 1e-2, "log": True},
    "training.weight_decay": {"low": 1e-5, "high": 1e-1, "log": True},
    "training.batch_size": {"choices": [64, 128, 256, 512]},
}

#: config keys a trial may not set: they would change the data, the tasks or the split
FIXED = ("data.", "tasks", "features.", "sources", "sampling.", "tune", "tracking")


def _leaves() -> set[str]:
    return {p for p, _ in fields() if not p.startswith(FIXED)}


def search_space(overrides: Mapping[str, ParamSpec | None]) -> dict[str, ParamSpec]:
    """The default space with the config's entries replacing (or, null, removing) keys;
    every key checked (one line naming the bad entry and the fix)."""
    space = {k: ParamSpec.model_validate(v) for k, v in DEFAULT_SPACE.items()}
    for key, spec in overrides.items():
        if spec is None:
            space.pop(key, None)
        else:
            space[key] = spec
    leaves = _leaves()
    for key in space:
        _check_key(key, leaves)
    return space


def _check_key(key: str, leaves: set[str]) -> None:
    if key in leaves or key == WEIGHTS:
        return
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "balancing":
        if parts[1] not in METHODS:
            raise PolytaskError(
                f"`tune.space`: '{key}' names no balancing method{did_you_mean(parts[1], METHODS)}"
                "; write balancing.METHOD.OPTION"
            )
        options = METHODS[parts[1]].Options.model_fields
        if parts[2] not in options:
            raise PolytaskError(
                f"`tune.space`: method '{parts[1]}' has no option '{parts[2]}'"
                f"{did_you_mean(parts[2], options)}; fix the key"
            )
        return
    raise PolytaskError(
        f"`tune.space`: '{key}' is not a config key a trial can set"
        f"{did_you_mean(key, sorted(leaves))}; write SECTION.KEY (e.g. training.lr)"
    )


def suggest(trial: Any, key: str, spec: ParamSpec) -> Any:
    """One value of ``key`` drawn by the Optuna trial (non-scalar choices as JSON text)."""
    if spec.choices is not None:
        scalar = all(c is None or isinstance(c, (bool, int, float, str)) for c in spec.choices)
        if scalar:
            return trial.suggest_categorical(key, spec.choices)
        return json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in spec.choices]))
    assert spec.low is not None and spec.high is not None
    if spec.integer:
        return trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log)
    return trial.suggest_float(key, spec.low, spec.high, log=spec.log)


def draw(
    trial: Any, space: Mapping[str, ParamSpec], base: dict[str, Any], scale: Mapping[str, float]
) -> dict[str, Any]:
    """The trial's config (a dict): ``base`` with every drawn key set."""
    data = json.loads(json.dumps(base))
    method = (
        suggest(trial, "balancing.method", space["balancing.method"])
        if ("balancing.method" in space)
        else data["balancing"]["method"]
    )
    if method != data["balancing"]["method"]:
        keep = {k: data["balancing"][k] for k in ("jacobian", "log_every")}
        data["balancing"] = keep
    data["balancing"]["method"] = method
    for key, spec in space.items():
        parts = key.split(".")
        if key == "balancing.method" or key == WEIGHTS:
            continue
        if parts[0] == "balancing" and len(parts) == 3:
            if parts[1] == method:
                data["balancing"][parts[2]] = suggest(trial, key, spec)
            continue
        section = data
        for p in parts[:-1]:
            section = section.setdefault(p, {})
        section[parts[-1]] = suggest(trial, key, spec)
    if data["model"]["architecture"] != base["model"]["architecture"]:
        data["model"]["options"] = {}  # the base's options belong to its architecture
    if method == "weights" and WEIGHTS in space:
        data["balancing"]["weights"] = _weights(trial, space[WEIGHTS], data, scale)
    return data


def _weights(
    trial: Any, spec: ParamSpec, data: dict[str, Any], scale: Mapping[str, float]
) -> dict[str, float]:
    out = {}
    for task in data["tasks"]:
        name = task["name"]
        m = suggest(trial, f"{WEIGHTS}.{name}", spec)
        out[name] = round(float(m) / max(float(scale.get(name, 1.0)), 1e-12), 8)
    return out
