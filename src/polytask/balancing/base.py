"""The balancer protocol.

A balancer decides how task losses become one update. Loss-level methods (``level =
"loss"``) turn the per-task losses into one objective with :meth:`LossBalancer.combine`.
Each method declares its options once, as a pydantic model named ``Options`` next to its
code; :func:`polytask.balancing.get` validates them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict


class BalancerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Balancer:
    name: ClassVar[str]
    level: ClassVar[Literal["loss", "gradient"]]
    Options: ClassVar[type[BalancerOptions]] = BalancerOptions

    def __init__(self, options: BalancerOptions | None = None):
        self.options = options if options is not None else self.Options()
        self.task_names: list[str] = []

    def setup(self, task_names: list[str]) -> None:
        """Called once by the trainer with the tasks in output order."""
        self.task_names = list(task_names)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Learnable parameters of the method itself (optimised with the model)."""
        return []

    def weights(self) -> dict[str, float]:
        """The current task weights, for logging."""
        return {}

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.model_dump().items())
        return f"{type(self).__name__}({opts})"


class LossBalancer(Balancer):
    level = "loss"

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        """Per-task scalar losses (in task order) -> one scalar objective."""
        raise NotImplementedError

    def end_epoch(self, train_losses: dict[str, float]) -> None:
        """Hook for methods that adapt per epoch (e.g. DWA)."""
