"""Coordinate-wise trimmed mean (Yin et al. 2018), robust aggregation: per coordinate,
drop the ``trim`` largest and the ``trim`` smallest of the T task gradients' values and
average the rest, so up to ``trim`` outlying gradients cannot move any coordinate beyond
the range of the others.

It looks at single coordinates, so it needs the (T, P) matrix."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, GradientBalancer
from polytask.balancing.jacobian import TaskJacobian


class TrimmedMeanOptions(BalancerOptions):
    #: values dropped at each end of every coordinate (fewer when T <= 2 trim)
    trim: int = Field(1, ge=0)


class TrimmedMean(GradientBalancer):
    name = "trimmed_mean"
    Options = TrimmedMeanOptions
    options: TrimmedMeanOptions
    needs_matrix = True

    def direction(
        self, jac: TaskJacobian, tasks: list[int], losses: np.ndarray | None
    ) -> torch.Tensor:
        matrix = jac.matrix()
        t = matrix.shape[0]
        trim = min(self.options.trim, (t - 1) // 2)
        self.last_weights = dict.fromkeys(tasks, float("nan"))
        if trim == 0:
            return matrix.mean(0)
        kept = matrix.sort(dim=0).values[trim : t - trim]
        return kept.mean(0)
