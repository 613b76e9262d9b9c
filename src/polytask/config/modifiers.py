"""The keys of the balancing config that wrap any method (``balancing: {method: mgda,
ema: 0.9, every: 5}``), declared once: :class:`~polytask.config.BalancingConfig` has
them as its own fields, and :mod:`polytask.balancing.modifiers` gives a method's options
model the same fields when they are given to :func:`polytask.balancing.get`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class BalancingModifiers(BaseModel):
    #: follow an exponential moving average of the method's task weights,
    #: w̄ = ema w̄ + (1 - ema) w (CR-MOGM, Zhou et al. 2022); 0: the method's own weights
    ema: float = Field(0.0, ge=0, lt=1)
    #: recompute the weights only every this many steps and reuse the last ones in
    #: between (at gradient level those steps need no per-task Jacobian)
    every: int = Field(1, ge=1)

    def modifiers(self) -> dict[str, Any]:
        """The modifiers that differ from their defaults (none: the method unwrapped)."""
        fields = BalancingModifiers.model_fields
        return {k: getattr(self, k) for k in fields if getattr(self, k) != fields[k].default}


MODIFIER_KEYS = tuple(BalancingModifiers.model_fields)
