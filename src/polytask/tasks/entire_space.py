"""Entire-space tasks (ESMM, Ma et al. 2018): a probability that is the product of a
parent's and this task's head, trained on every row.

``conversion:entire_space:after=click`` has a head for the post-click conversion
probability pCVR; its output is pCTCVR = pCTR x pCVR, with pCTR the binary task
``click``'s probability. The label is the impression-level event (converted, so clicked
too: 0 on every unclicked row), known on every impression, so the loss runs over all
rows and the conversion head learns without the sample-selection bias of a model
trained on clicked rows only (which is then applied to every impression). The loss
reaches the click head as well. Raw outputs are two columns, the logits of pCTCVR and
of pCVR; ``predict`` writes ``TASK`` and ``TASK_proba`` (pCTCVR, as a binary task does)
and ``TASK_cvr_proba`` (pCVR); metrics are a binary task's, of pCTCVR over every row.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from polytask.errors import PolytaskError
from polytask.tasks.base import Task, TaskOptions
from polytask.tasks.binary import BinaryOptions, BinaryTask


class EntireSpaceOptions(BinaryOptions):
    #: the binary task whose probability this one multiplies (ESMM's click task)
    after: str


def product_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """logit(sigmoid(a) * sigmoid(b)), stable for large logits of either sign."""
    log_p = (F.logsigmoid(a) + F.logsigmoid(b)).clamp(max=-1e-7)
    # log(1 - p) = log1mexp(log p): expm1 near p = 1, log1p elsewhere
    log_q = torch.where(
        log_p > -math.log(2), torch.log(-torch.expm1(log_p)), torch.log1p(-torch.exp(log_p))
    )
    return log_p - log_q


class EntireSpaceTask(BinaryTask):
    kind = "entire_space"
    Options: ClassVar[type[TaskOptions]] = EntireSpaceOptions
    options: EntireSpaceOptions
    #: pCTCVR is a product of two heads' probabilities: no temperature of its own
    corrections: ClassVar[tuple[str, ...]] = ()

    def composes_with(self) -> tuple[str, ...]:
        return (self.options.after,)

    def check_parent(self, parent: Task) -> None:
        if parent.kind != "binary":
            raise PolytaskError(
                f"task '{self.name}' (entire_space) multiplies task '{parent.name}''s "
                f"probability, but that is a {parent.kind} task; 'after' names a binary task"
            )

    def compose(self, own: torch.Tensor, parents: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([product_logit(parents[0], own), own], dim=1)

    @property
    def raw_width(self) -> int:
        return 2

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().elementwise_loss(output[:, :1], target)

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().mean_loss(output[:, :1], target)

    def group_key(self) -> None:
        return None

    def fit_corrections(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        return {}

    def initial_bias(self) -> torch.Tensor | None:
        return None  # pCVR starts at 1/2; pCTCVR then starts at half the click rate

    def probabilities(self, output: np.ndarray) -> np.ndarray:
        return super().probabilities(output[:, :1] if output.ndim == 2 else output)

    def metrics(self, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        return super().metrics(output[:, :1], target, mask)

    def decode(self, output: np.ndarray) -> dict[str, np.ndarray]:
        out = super().decode(output[:, :1])
        out[f"{self.name}_cvr_proba"] = super().probabilities(output[:, 1:2])
        return out

    def describe_prediction(self) -> str:
        return (
            f"predicted impression-level class (after '{self.options.after}'), one of "
            f"{', '.join(repr(c) for c in self.classes[:2])}"
        )

    def onnx_decoding(self) -> dict[str, Any] | None:
        return None
