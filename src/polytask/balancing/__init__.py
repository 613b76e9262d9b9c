"""Balancing tasks: ``get(name, **options)`` returns a fresh method object.

A new method is one module plus one line in ``METHODS``; its options are declared once,
as the ``Options`` model next to its code.
"""

from __future__ import annotations

from typing import Any

from polytask.balancing.base import Balancer, BalancerOptions, LossBalancer
from polytask.balancing.weighting.ew import EqualWeighting
from polytask.balancing.weighting.fixed import FixedWeights
from polytask.errors import PolytaskError, did_you_mean

METHODS: dict[str, type[Balancer]] = {
    "ew": EqualWeighting,
    "weights": FixedWeights,
}


def get(name: str, **options: Any) -> Balancer:
    """A fresh balancer by name, its options validated (unknown ones are an error)."""
    from polytask.config import validate_options

    try:
        cls = METHODS[name]
    except KeyError:
        raise PolytaskError(
            f"unknown balancing method '{name}'{did_you_mean(name, METHODS)}; "
            f"choose one of {', '.join(METHODS)}"
        ) from None
    return cls(validate_options(cls.Options, options, where=f"balancing method '{name}'"))


__all__ = ["METHODS", "Balancer", "BalancerOptions", "LossBalancer", "get"]
