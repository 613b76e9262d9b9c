"""Fixed weights: sum of task losses each multiplied by a user-given weight."""

from __future__ import annotations

import torch
from pydantic import Field

from polytask.balancing.base import BalancerOptions, LossBalancer, weighted_sum
from polytask.errors import PolytaskError, did_you_mean


class FixedWeightsOptions(BalancerOptions):
    #: weight per task name; every task needs one
    weights: dict[str, float] = Field(default_factory=dict)


class FixedWeights(LossBalancer):
    name = "weights"
    Options = FixedWeightsOptions
    options: FixedWeightsOptions

    def setup(self, task_names: list[str]) -> None:
        super().setup(task_names)
        given = self.options.weights
        for name in given:
            if name not in task_names:
                raise PolytaskError(
                    f"balancing weights: no task named '{name}'{did_you_mean(name, task_names)}"
                    f"; tasks are {', '.join(task_names)}"
                )
        missing = [t for t in task_names if t not in given]
        if missing:
            raise PolytaskError(
                f"balancing weights: no weight for task(s) {', '.join(missing)}; give every "
                "task a weight, e.g. weights: {" + ", ".join(f"{t}: 1.0" for t in task_names) + "}"
            )
        if any(w < 0 for w in given.values()):
            raise PolytaskError("balancing weights must be non-negative")
        self._w = [float(given[t]) for t in task_names]

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        return weighted_sum(losses, self._w)

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._w, strict=True))
