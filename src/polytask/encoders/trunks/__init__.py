"""Tabular trunks by name (``model.trunk``). A new one is one module plus its class in
``_CLASSES``; its options (``model.trunk_options``) are declared next to its code."""

from __future__ import annotations

from typing import Any

from torch import nn

from polytask.config import validate_options
from polytask.encoders.trunks.base import Trunk, TrunkOptions, TrunkSpec
from polytask.encoders.trunks.ft_transformer import FTTransformerTrunk
from polytask.encoders.trunks.mlp import MLPTrunk
from polytask.encoders.trunks.resnet import ResNetTrunk
from polytask.encoders.trunks.tabm import TabMTrunk
from polytask.errors import PolytaskError, did_you_mean

_CLASSES: tuple[type[Trunk], ...] = (MLPTrunk, ResNetTrunk, FTTransformerTrunk, TabMTrunk)
TRUNKS: dict[str, type[Trunk]] = {cls.name: cls for cls in _CLASSES}
assert len(TRUNKS) == len(_CLASSES) and "" not in TRUNKS, "names must differ"


def trunk_class(name: str) -> type[Trunk]:
    try:
        return TRUNKS[name]
    except KeyError:
        raise PolytaskError(
            f"unknown model.trunk '{name}'{did_you_mean(name, TRUNKS)}; choose one of "
            f"{', '.join(TRUNKS)}"
        ) from None


def trunk_options(name: str, options: dict[str, Any]) -> TrunkOptions:
    """``model.trunk_options`` validated by the trunk's own Options."""
    return validate_options(trunk_class(name).Options, options, where=f"trunk '{name}'")


def build_trunk(name: str, options: dict[str, Any], spec: TrunkSpec) -> nn.Sequential:
    """The trunk ``name`` for ``spec``, its options checked (one clear line if bad)."""
    return trunk_class(name).build(spec, trunk_options(name, options))


def check_trunk(trunk: str, architecture: str, builds_shared_layers: bool, sources: bool) -> None:
    """A trunk other than the MLP is the shared stack of an architecture that takes the
    encoder's layers (hard sharing) on one data source: experts, task columns and the
    sources' shared layers are MLPs."""
    if trunk == "mlp":
        return
    trunk_class(trunk)  # an unknown name is named first
    if builds_shared_layers:
        raise PolytaskError(
            f"model.trunk '{trunk}' works with architecture 'hard' only (the experts of "
            f"'{architecture}' are MLPs); use architecture hard or model.trunk mlp"
        )
    if sources:
        raise PolytaskError(
            f"model.trunk '{trunk}' works with one data source only (the sources meet in "
            "shared MLP layers); use model.trunk mlp with sources"
        )


__all__ = [
    "TRUNKS",
    "Trunk",
    "TrunkOptions",
    "TrunkSpec",
    "build_trunk",
    "check_trunk",
    "trunk_class",
]
