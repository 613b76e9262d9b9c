"""Checkpoint state that is a dataclass's own fields: adding a counter is adding a field.

A :class:`FieldState` subclass is saved as ``{field: value}`` (flat, so several of them
share one checkpoint dict without nesting) and loaded back by the same field list, each
scalar converted to its default's type (the checkpoint's JSON keeps ``1.0`` and ``1``
apart, but an older writer may not have)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, Field, fields
from typing import Any


class FieldState:
    """Mixin for dataclasses: ``state_dict`` / ``load_state_dict`` over ``fields(self)``."""

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, _coerce(f, state[f.name]))


def _coerce(f: Field[Any], value: Any) -> Any:
    default = f.default
    if default is not MISSING and isinstance(default, (bool, int, float)):
        return type(default)(value)
    if f.default_factory is list:
        return list(value)
    return value
