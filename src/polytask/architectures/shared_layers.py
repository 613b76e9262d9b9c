"""Base of the architectures that build their own shared layers (experts, task columns).

They get the encoder without hidden layers (its input stem) and ``model.hidden`` as the
default widths of their experts or columns; each task's head is one module that reads
the shared representation (see :class:`polytask.architectures.base.MultiTaskNet`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from polytask.architectures.base import MultiTaskNet
from polytask.errors import PolytaskError


class SharedLayersNet(MultiTaskNet):
    builds_shared_layers: ClassVar[bool] = True
    #: the name users type, for error messages
    name: ClassVar[str] = ""

    def _set_heads(self, heads: dict[str, nn.Module]) -> None:
        self.task_names = list(heads)
        self.heads = nn.ModuleDict(heads)
        self._head_list = [self.heads[n] for n in self.task_names]

    def head_modules(self) -> list[nn.Module]:
        return list(self._head_list)

    def heads_forward(self, rep: torch.Tensor) -> list[torch.Tensor]:
        return [head(rep) for head in self._head_list]

    @classmethod
    def widths(cls, option: Sequence[int] | None, hidden: Sequence[int], key: str) -> list[int]:
        """The widths from the option ``key`` when given, else ``model.hidden``."""
        widths = list(option) if option is not None else list(hidden)
        if not widths:
            raise PolytaskError(
                f"architecture '{cls.name}' needs the widths of its shared layers: set "
                f"model.hidden (e.g. --hidden 64) or the option {key}"
            )
        return widths
