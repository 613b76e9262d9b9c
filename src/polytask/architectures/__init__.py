"""Architectures by name. A new one is one module plus its class in ``_CLASSES``; the
registry key is the class's own ``name``."""

from __future__ import annotations

from polytask.architectures.base import ArchitectureOptions, ArchitectureSpec, MultiTaskNet
from polytask.architectures.cgc import CGC
from polytask.architectures.cross_stitch import CrossStitch
from polytask.architectures.hard import HardSharing
from polytask.architectures.mmoe import MMoE
from polytask.architectures.mtan import MTAN
from polytask.architectures.ple import PLE
from polytask.errors import PolytaskError, did_you_mean

_CLASSES: tuple[type[MultiTaskNet], ...] = (HardSharing, MMoE, CGC, PLE, CrossStitch, MTAN)
ARCHITECTURES: dict[str, type[MultiTaskNet]] = {cls.name: cls for cls in _CLASSES}
assert len(ARCHITECTURES) == len(_CLASSES) and "" not in ARCHITECTURES, "names must differ"


def architecture_class(name: str) -> type[MultiTaskNet]:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise PolytaskError(
            f"unknown architecture '{name}'{did_you_mean(name, ARCHITECTURES)}; "
            f"choose one of {', '.join(ARCHITECTURES)}"
        ) from None


__all__ = [
    "ARCHITECTURES",
    "ArchitectureOptions",
    "ArchitectureSpec",
    "MultiTaskNet",
    "architecture_class",
]
