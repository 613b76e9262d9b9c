"""A run config from a file or mapping, task specs and keyword overrides.

It lives with the config, not the API, so that the command line can build and check a
run's config (bad keys, unknown kinds, missing files) without importing torch."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polytask.config.keys import apply_keywords
from polytask.config.loading import load_config, parse_config, parse_task_spec
from polytask.config.schema import RunConfig

TaskSpec = str | Mapping[str, Any]


def task_list(tasks: Sequence[TaskSpec] | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Task specs in any accepted form -> task mappings for the config."""
    if isinstance(tasks, str):
        tasks = [tasks]
    if isinstance(tasks, Mapping):  # {"hospdead": "binary", "slos": {"kind": ...}}
        out = []
        for name, spec in tasks.items():
            if isinstance(spec, str):
                out.append({"name": name, "column": name, "kind": spec})
            else:
                out.append({"name": name, **dict(spec)})
        return out
    result = []
    for spec in tasks:
        result.append(parse_task_spec(spec) if isinstance(spec, str) else dict(spec))
    return result


def build_config(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    tasks: Sequence[TaskSpec] | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> RunConfig:
    """A config from a file/mapping plus keyword overrides (``epochs=20``,
    ``balancing="ew"``, ``architecture="hard"``, ``hidden=[64]``, ...): every field of
    ``training`` and ``model`` by its name, and the keywords fields declare in the schema
    (``polytask.config.keys.KEYWORDS``)."""
    if config is None:
        data: dict[str, Any] = {}
    elif isinstance(config, RunConfig):
        data = config.to_dict()
    elif isinstance(config, (str, Path)):
        data = load_config(config).to_dict()
    else:
        data = copy.deepcopy(dict(config))  # the caller's mapping stays as it was
    if tasks is not None:
        data["tasks"] = task_list(tasks)
    apply_keywords(data, overrides)  # the keywords come from the schema (config.keys)
    return parse_config(data)
