"""Reading a run config: YAML 1.2 without duplicate keys, validation errors a person can
act on (the key, the closest known key, the value), and ``COLUMN:KIND`` task specs."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from polytask.config.schema import RunConfig
from polytask.errors import PolytaskError, did_you_mean


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans, so values such as
    ``positive: yes`` or ``positive: on`` stay the text the user wrote."""


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _mapping_without_duplicates(loader: _Yaml12Loader, node: yaml.MappingNode) -> Any:
    """A key given twice is an error (PyYAML would keep the last one silently)."""
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *defaults' may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping says so
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=True)


_Yaml12Loader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)


# -- validation with errors a person can act on ----------------------------------------------


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Known keys of the (nested) model that holds the location ``loc``."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        nested = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return []
        current = nested[0]
    return list(getattr(current, "model_fields", {}))


#: how pydantic names a union's members in an error's location ("constrained-int")
_UNION_TAG = re.compile(r"(constrained-)?(int|float|str|bool)|literal\[.*\]")
_AUTO_TAG = "literal['auto']"


def _field_loc(loc: tuple[Any, ...] | list[Any]) -> tuple[Any, ...]:
    """An error's location without the union member it names (``training.epochs``)."""
    out = tuple(loc)
    while out and isinstance(out[-1], str) and _UNION_TAG.fullmatch(out[-1]):
        out = out[:-1]
    return out


def format_validation_error(
    err: ValidationError, model: type[BaseModel], where: str = "config"
) -> PolytaskError:
    errors = err.errors()
    e = errors[0]
    loc = _field_loc(e["loc"])
    path = _one_line(".".join(str(p) for p in loc))
    if e["type"] == "extra_forbidden":
        key = str(loc[-1])
        hint = did_you_mean(key, _fields_at(model, loc))
        known = ", ".join(_fields_at(model, loc))
        if not known:
            return PolytaskError(f"{where}: unknown key '{path}'; it takes no options")
        return PolytaskError(f"{where}: unknown key '{path}'{hint}; known keys: {known}")
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if any(_field_loc(o["loc"]) == loc and str(o["loc"][-1]) == _AUTO_TAG for o in errors[1:]):
        msg += ", or 'auto' (chosen from the table)"
    shown = (
        f" (got {_one_line(repr(e['input']))})"
        if "input" in e and not isinstance(e["input"], dict)
        else ""
    )
    return PolytaskError(
        f"{where}: '{path}': {msg}{shown}; fix this value"
        if path
        else f"{where}: {msg}; fix the config"
    )


def _one_line(text: str, limit: int = 120) -> str:
    """Control characters escaped (a key or value can't break the message's line), and
    at most ``limit`` characters."""
    if any(not c.isprintable() for c in text):
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_options(model: type[BaseModel], options: dict[str, Any], where: str) -> Any:
    try:
        return model(**options)
    except ValidationError as err:
        raise format_validation_error(err, model, where) from None


def parse_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise PolytaskError(f"{where}: expected a mapping of keys (data, tasks, training, ...)")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err, RunConfig, where) from None


#: keys whose default changed after runs were saved without them, and what such a run
#: meant: a saved run loads as it trained
SAVED_BEFORE: dict[tuple[str, str], Any] = {("model", "numeric_encoding"): "standard"}


def parse_saved_config(data: dict[str, Any], where: str) -> RunConfig:
    """A run's own saved config.yaml (:data:`SAVED_BEFORE` fills the keys it predates)."""
    if isinstance(data, dict):
        data = copy.deepcopy(data)
        for (section, key), value in SAVED_BEFORE.items():
            part = data.setdefault(section, {})
            if isinstance(part, dict):
                part.setdefault(key, value)
    return parse_config(data, where)


def load_config(path: str | Path) -> RunConfig:
    p = Path(path)
    if not p.is_file():
        raise PolytaskError(f"config file '{p}' does not exist; check the path")
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        problem = getattr(err, "problem", None)
        why = f" ({_one_line(problem)})" if isinstance(problem, str) else ""
        raise PolytaskError(
            f"config file '{p}' is not valid YAML{at}{why}; fix its syntax"
        ) from None
    except RecursionError:
        raise PolytaskError(
            f"config file '{p}' is nested too deeply to be a config; fix its structure"
        ) from None
    if data is None:
        raise PolytaskError(f"config file '{p}' is empty; see the README for an example")
    cfg = parse_config(data, where=f"config '{p.name}'")
    # relative data paths are relative to the config file's folder
    for dc in (cfg.data, *(source.data for source in cfg.sources)):
        for key in ("path", "validation", "test"):
            value = getattr(dc, key)
            if value and not Path(value).is_absolute():
                setattr(dc, key, str((p.parent / value).resolve()))
    return cfg


def parse_task_spec(spec: str) -> dict[str, Any]:
    """``COLUMN:KIND[:OPTION=VALUE...]`` -> a task mapping for :class:`TaskConfig`."""
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise PolytaskError(
            f"task spec '{spec}' is not COLUMN:KIND[:OPTION=VALUE...]; "
            "e.g. --task hospdead:binary or --task slos:regression:transform=log1p"
        )
    column, kind = parts[0], parts[1]
    out: dict[str, Any] = {"name": column, "column": column, "kind": kind}
    for opt in parts[2:]:
        if "=" not in opt:
            raise PolytaskError(
                f"task spec '{spec}': option '{opt}' is not OPTION=VALUE; "
                f"e.g. {column}:{kind}:positive=yes"
            )
        key, value = opt.split("=", 1)
        key = key.strip()
        if key in ("kind", "columns"):
            raise PolytaskError(f"task spec '{spec}': '{key}' cannot be set as an option")
        out[key] = value
    return out
