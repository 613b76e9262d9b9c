"""What every section of the config schema is built from: a field's CLI metadata
(:func:`flag`) and the strict base model (unknown keys are errors)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def flag(
    name: str,
    help: str,
    metavar: str | None = None,
    *,
    extend: bool = False,
    keyword: str | None = None,
    show_default: bool = True,
) -> dict[str, Any]:
    """A field's CLI metadata (``json_schema_extra``): ``polytask train``'s flag ``name``
    sets this key (``extend``: adds to the list instead of replacing it); ``keyword`` is
    its API/scikit-learn keyword where that is not the field's own name. The flag's help
    shows the key and the schema's default, so neither is written twice."""
    out: dict[str, Any] = {"flag": name, "help": help}
    if metavar:
        out["metavar"] = metavar
    if extend:
        out["extend"] = True
    if keyword:
        out["keyword"] = keyword
    if not show_default:
        out["show_default"] = False
    return out


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
