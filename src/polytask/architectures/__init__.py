"""Architectures by name. A new one is one module plus one line in ``ARCHITECTURES``."""

from __future__ import annotations

from polytask.architectures.base import ArchitectureOptions, MultiTaskNet
from polytask.architectures.cgc import CGC
from polytask.architectures.cross_stitch import CrossStitch
from polytask.architectures.hard import HardSharing
from polytask.architectures.mmoe import MMoE
from polytask.architectures.mtan import MTAN
from polytask.architectures.ple import PLE
from polytask.errors import PolytaskError, did_you_mean

ARCHITECTURES: dict[str, type[MultiTaskNet]] = {
    "hard": HardSharing,
    "mmoe": MMoE,
    "cgc": CGC,
    "ple": PLE,
    "cross_stitch": CrossStitch,
    "mtan": MTAN,
}


def architecture_class(name: str) -> type[MultiTaskNet]:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise PolytaskError(
            f"unknown architecture '{name}'{did_you_mean(name, ARCHITECTURES)}; "
            f"choose one of {', '.join(ARCHITECTURES)}"
        ) from None


__all__ = ["ARCHITECTURES", "ArchitectureOptions", "MultiTaskNet", "architecture_class"]
