"""The architecture protocol: how the shared encoder and the task heads are wired."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from polytask.tasks import Task


class ArchitectureOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MultiTaskNet(nn.Module):
    """Base of every architecture: ``forward(numeric, categorical) -> {task: output}``.

    ``representation`` and ``heads_forward`` split the forward pass at the shared
    representation, which gradient-level balancing uses."""

    Options: ClassVar[type[ArchitectureOptions]] = ArchitectureOptions
    task_names: list[str]

    def representation(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def heads_forward(self, rep: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def head_modules(self) -> list[nn.Module]:
        """Each task's head, in task order: ``heads_forward(rep)[t] == head_modules()[t](rep)``."""
        raise NotImplementedError

    def linear_heads(self) -> list[nn.Linear] | None:
        """Each head's only layer when every head is one linear layer on the shared
        representation (then task Gramians have a closed form), else None."""
        return None

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that every task's gradient flows into (everything but the heads)."""
        head_ids = {id(p) for h in self.head_modules() for p in h.parameters()}
        return [p for p in self.parameters() if id(p) not in head_ids]

    def forward_list(self, numeric: torch.Tensor, categorical: torch.Tensor) -> list[torch.Tensor]:
        """Outputs in task order (the trainer's hot path)."""
        return self.heads_forward(self.representation(numeric, categorical))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.task_names, self.forward_list(numeric, categorical), strict=True))


def init_head_bias(head: nn.Module, task: Task) -> None:
    """Start the head's last linear layer at the task's base rate (e.g. log-odds)."""
    bias = task.initial_bias()
    last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    if bias is not None and last.bias is not None:
        with torch.no_grad():
            last.bias.copy_(bias.to(last.bias))
