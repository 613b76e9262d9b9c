"""Base of the architectures that build their own shared layers (experts, task columns).

They get the encoder without hidden layers (its input stem) and ``model.hidden`` as the
default widths of their experts or columns; each task's head is one module that reads
the shared representation (see :class:`polytask.architectures.base.MultiTaskNet`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from polytask.architectures.base import MultiTaskNet
from polytask.errors import PolytaskError


class SharedLayersNet(MultiTaskNet):
    builds_shared_layers: ClassVar[bool] = True

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
