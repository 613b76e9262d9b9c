"""The flat keys of the run config, derived from the schema: which CLI flag and which
API/scikit-learn keyword sets which config key (``training.epochs``), with the schema's
default and help. The CLI, :func:`polytask.build_config` and the scikit-learn estimator
all read these tables, so a key is declared once, on its field in
:mod:`polytask.config.schema`; the CLI also uses them to name a key's flag in an error."""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from polytask.config.schema import RunConfig
from polytask.config.table_defaults import Auto
from polytask.errors import PolytaskError, did_you_mean

#: sections whose every field is also an API keyword of its own name (``epochs=``,
#: ``hidden=``); other keys are keywords only where their field declares one
KEYWORD_SECTIONS = ("training", "model")


@dataclass(frozen=True)
class Flag:
    """A CLI flag that sets one config key."""

    path: str  # "training.epochs"
    name: str  # "--epochs"
    help: str
    metavar: str | None
    kind: type  # int, float, str, list (of str) or bool (a switch that sets False)
    item: type  # for lists: the items' type
    extend: bool  # adds to the key's list instead of replacing it
    default: Any
    show_default: bool


def _plain(annotation: Any) -> Any:
    """``int | None`` -> int, ``Annotated[int, ...]`` -> int, ``list[X]`` as is."""
    if get_origin(annotation) is Annotated:
        return _plain(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        # None and "auto" (a value chosen from the table) are no flag's type
        args = [a for a in get_args(annotation) if a is not type(None) and a != Auto]
        return _plain(args[0]) if len(args) == 1 else annotation
    return annotation


def _section(annotation: Any) -> type[BaseModel] | None:
    plain = _plain(annotation)
    return plain if isinstance(plain, type) and issubclass(plain, BaseModel) else None


def fields(model: type[BaseModel] = RunConfig, prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every (dotted path, field) of the schema, sections before their keys."""
    for name, info in model.model_fields.items():
        path = prefix + name
        yield path, info
        nested = _section(info.annotation)
        if nested is not None:
            yield from fields(nested, path + ".")


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _flag(path: str, info: FieldInfo) -> Flag:
    extra = _extra(info)
    plain = _plain(info.annotation)
    listed = get_origin(plain) is list
    item = _plain(get_args(plain)[0]) if listed else str
    return Flag(
        path=path,
        name=str(extra["flag"]),
        help=str(extra["help"]),
        metavar=extra.get("metavar"),  # type: ignore[arg-type]
        kind=list if listed else plain,
        item=item,
        extend=bool(extra.get("extend")),
        default=info.get_default(call_default_factory=True),
        show_default=extra.get("show_default", True) is not False,
    )


FLAGS: dict[str, Flag] = {p: _flag(p, i) for p, i in fields() if "flag" in _extra(i)}

#: API (and scikit-learn) keyword -> the config key (or section) it sets
KEYWORDS: dict[str, str] = {
    **{str(_extra(i)["keyword"]): p for p, i in fields() if "keyword" in _extra(i)},
    **{p.split(".")[1]: p for p, _ in fields() if p.split(".")[0] in KEYWORD_SECTIONS and "." in p},
}


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys: ``{"training.lr": 0.002, "tasks.0.kind": "binary"}``.
    A list holding mappings is indexed; other lists and values stay as they are. One
    flattener for everything that names config keys (tracking's parameters, a resumed
    run's conflicts)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    out.update(flatten(item, f"{name}.{i}."))
                else:
                    out[f"{name}.{i}"] = item
        else:
            out[name] = value
    return out


def set_key(data: dict[str, Any], path: str, value: Any, extend: bool = False) -> None:
    """Set the dotted ``path`` of a config mapping (missing sections become mappings);
    ``extend`` adds a list's items to those already there."""
    *sections, last = path.split(".")
    node = data
    for part in sections:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = [*(node.get(last) or []), *value] if extend else value


def apply_keywords(data: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """API keywords (``epochs=20``, ``drop=["id"]``, ``balancing="uw"``) onto a config
    mapping; None leaves a key as it is, an unknown keyword names the closest one."""
    for key, value in overrides.items():
        if value is None:
            continue
        path = KEYWORDS.get(key)
        if path is None:
            raise PolytaskError(f"unknown option '{key}'{did_you_mean(key, KEYWORDS)}")
        if isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, (list, tuple)):
            value = list(value)
        set_key(data, path, value)


_KEY = re.compile(r"(?<![\w.'-])(" + "|".join(re.escape(p) for p in FLAGS) + r")(?![\w.'])")


#: Arguments of the front doors that are not config keys (where a run goes, what to
#: replace, ...). Library messages name them as the API spells them, in backquotes
#: (``choose another `out` or pass `overwrite=True```); the CLI shows its flag instead.
ARGUMENTS: dict[str, str] = {
    "out": "--out",
    "output": "--output",
    "overwrite=True": "--overwrite",
    "keep": "--keep",
    "port": "--port",
    "seeds": "--seeds",
    "tasks": "--task",
    "affinity_every": "--affinity-every",
    "coverage": "--coverage",
    "repeats": "--repeats",
}
_ARGUMENT = re.compile("`(" + "|".join(re.escape(a) for a in ARGUMENTS) + ")`")


def with_flags(message: str) -> str:
    """A library message with each config key that has a flag named by its flag, e.g.
    'lower training.lr' -> 'lower --lr', and each backquoted front-door argument by its
    flag ('pass `overwrite=True`' -> 'pass --overwrite'), for the CLI, whose user typed
    flags. A quoted key ('training.epochs': a validation error's location, maybe in a
    config file the user wrote) stays as it is."""
    message = _ARGUMENT.sub(lambda m: ARGUMENTS[m.group(1)], message)
    return _KEY.sub(lambda m: FLAGS[m.group(1)].name, message)
