"""Balancing tasks: ``get(name, **options)`` returns a fresh method object.

A new method is one module plus one line in ``METHODS``; its options are declared once,
as the ``Options`` model next to its code.
"""

from __future__ import annotations

from typing import Any

from polytask.balancing.aggregation.aligned_mtl import AlignedMTL
from polytask.balancing.aggregation.cagrad import CAGrad
from polytask.balancing.aggregation.config import ConFIG
from polytask.balancing.aggregation.db_mtl import DBMTL
from polytask.balancing.aggregation.dualproj import DualProj
from polytask.balancing.aggregation.excess_mtl import ExcessMTL
from polytask.balancing.aggregation.fairgrad import FairGrad
from polytask.balancing.aggregation.graddrop import GradDrop
from polytask.balancing.aggregation.gradnorm import GradNorm
from polytask.balancing.aggregation.gradvac import GradVac
from polytask.balancing.aggregation.imtl import IMTL
from polytask.balancing.aggregation.imtl_g import IMTLG
from polytask.balancing.aggregation.krum import Krum
from polytask.balancing.aggregation.mgda import MGDA
from polytask.balancing.aggregation.moco import MoCo
from polytask.balancing.aggregation.modo import MoDo
from polytask.balancing.aggregation.nash_mtl import NashMTL
from polytask.balancing.aggregation.pcgrad import PCGrad
from polytask.balancing.aggregation.rgw import RandomGradientWeighting
from polytask.balancing.aggregation.sdmgrad import SDMGrad
from polytask.balancing.aggregation.simple import Mean, Sum
from polytask.balancing.aggregation.trimmed_mean import TrimmedMean
from polytask.balancing.aggregation.upgrad import UPGrad
from polytask.balancing.base import Balancer, BalancerOptions, GradientBalancer, LossBalancer
from polytask.balancing.byo import backward
from polytask.balancing.gramian import GramianEngine
from polytask.balancing.modifiers import modified, wants_modifiers
from polytask.balancing.weighting.auto_lambda import AutoLambda
from polytask.balancing.weighting.dwa import DynamicWeightAverage
from polytask.balancing.weighting.ew import EqualWeighting
from polytask.balancing.weighting.famo import FAMO
from polytask.balancing.weighting.fixed import FixedWeights
from polytask.balancing.weighting.gls import GeometricLossStrategy
from polytask.balancing.weighting.imtl_l import IMTLL
from polytask.balancing.weighting.rlw import RandomLossWeighting
from polytask.balancing.weighting.stch import SmoothTchebycheff
from polytask.balancing.weighting.uw import UncertaintyWeighting
from polytask.errors import PolytaskError, did_you_mean

METHODS: dict[str, type[Balancer]] = {
    "ew": EqualWeighting,
    "weights": FixedWeights,
    "uw": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "rlw": RandomLossWeighting,
    "gradnorm": GradNorm,
    "famo": FAMO,
    "db_mtl": DBMTL,
    "mean": Mean,
    "sum": Sum,
    "mgda": MGDA,
    "pcgrad": PCGrad,
    "graddrop": GradDrop,
    "gradvac": GradVac,
    "cagrad": CAGrad,
    "imtl_g": IMTLG,
    "nash_mtl": NashMTL,
    "aligned_mtl": AlignedMTL,
    "upgrad": UPGrad,
    "dualproj": DualProj,
    "config": ConFIG,
    "stch": SmoothTchebycheff,
    "gls": GeometricLossStrategy,
    "imtl_l": IMTLL,
    "auto_lambda": AutoLambda,
    "imtl": IMTL,
    "fairgrad": FairGrad,
    "excess_mtl": ExcessMTL,
    "sdmgrad": SDMGrad,
    "modo": MoDo,
    "moco": MoCo,
    "krum": Krum,
    "trimmed_mean": TrimmedMean,
    "rgw": RandomGradientWeighting,
}


def get(name: str, **options: Any) -> Balancer:
    """A fresh balancer by name, its options validated (unknown ones are an error).
    ``ema`` and ``every`` wrap any method that has task weights
    (:mod:`polytask.balancing.modifiers`)."""
    from polytask.config import validate_options

    try:
        cls = METHODS[name]
    except KeyError:
        raise PolytaskError(
            f"unknown balancing method '{name}'{did_you_mean(name, METHODS)}; "
            f"choose one of {', '.join(METHODS)}"
        ) from None
    if wants_modifiers(options):  # ema / every: the same method, its weights smoothed or held
        cls = modified(cls)
    return cls(validate_options(cls.Options, options, where=f"balancing method '{name}'"))


__all__ = [
    "METHODS",
    "Balancer",
    "BalancerOptions",
    "GradientBalancer",
    "GramianEngine",
    "LossBalancer",
    "backward",
    "get",
]
