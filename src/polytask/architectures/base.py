"""The architecture protocol: how the shared encoder and the task heads are wired."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from polytask.encoders.mlp import mlp
from polytask.encoders.protocol import Encoder
from polytask.errors import PolytaskError
from polytask.tasks import Task
from polytask.tasks.compose import compose_outputs, composition


class ArchitectureOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, eq=False)
class ArchitectureSpec:
    """Everything an architecture is built from, one argument for every constructor.

    ``hidden`` and ``norm`` are the shared layers' widths and norm: an architecture that
    builds its own shared layers (``builds_shared_layers``) builds them from these; the
    others get an encoder that already ends in those layers and ignore them."""

    encoder: Encoder
    tasks: Sequence[Task]
    head_hidden: Sequence[int] = ()
    activation: str = "relu"
    dropout: float = 0.0
    #: the architecture's validated options (None: its defaults)
    options: ArchitectureOptions | None = None
    hidden: Sequence[int] = ()
    norm: str = "none"


class MultiTaskNet(nn.Module):
    """Base of every architecture: ``forward(numeric, categorical, *extra) -> {task: output}``.

    ``representation`` and ``heads_forward`` split the forward pass at the shared
    representation, which gradient-level balancing uses. The split must be truthful:
    task t's output is ``head_modules()[t](rep)``, the head modules share no parameter,
    and every other parameter reaches the tasks only through ``rep``; then the per-task
    gradients the Jacobian engine takes (at ``rep`` and at ``shared_parameters()``) are
    each task's own gradients."""

    Options: ClassVar[type[ArchitectureOptions]] = ArchitectureOptions
    #: False: the encoder comes with the shared hidden layers (``model.hidden``) and the
    #: architecture adds heads. True: the architecture builds its own shared layers
    #: (experts, task columns) from ``model.hidden``; it gets the encoder without hidden
    #: layers (for tables: the categorical embeddings joined to the numeric features; an
    #: image or text encoder would pass its backbone's feature vector) and builds them
    #: from the spec's ``hidden`` and ``norm``.
    builds_shared_layers: ClassVar[bool] = False
    #: True: the encoder keeps an image's feature map even without per-pixel tasks
    needs_spatial: ClassVar[bool] = False
    #: the name users type (``model.architecture``); the registry is built from it
    name: ClassVar[str] = ""
    task_names: list[str]

    @classmethod
    def pinned_options(
        cls, options: dict[str, Any], hidden: list[int], n_tasks: int
    ) -> dict[str, Any]:
        """The options a new run writes into its config. A default that depends on other
        keys (or that has changed since runs were first saved) is stated there, so a run
        loads as it trained whatever later defaults become; saved runs without it keep
        the meaning the option had when they were written. Here: unchanged."""
        return options

    def __init__(self, spec: ArchitectureSpec):
        super().__init__()
        #: tasks whose outputs are composed from others' (entire-space tasks), applied
        #: after the heads by ``forward_list``
        self._tasks = list(spec.tasks)
        self._composition = composition(self._tasks)

    def compose(self, outs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The heads' outputs -> the tasks' raw outputs (see :mod:`polytask.tasks.compose`)."""
        return compose_outputs(self._tasks, self._composition, outs) if self._composition else outs

    def representation(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The shared representation from the positional inputs: ``(numeric,
        categorical, *text_and_image_columns)`` (see ``FeatureTensors.inputs``)."""
        raise NotImplementedError

    def _set_heads(self, heads: Mapping[str, nn.Module]) -> None:
        """Register one head per task, in task order (the keys are the task names)."""
        self.task_names = list(heads)
        self.heads = nn.ModuleDict(heads)
        self._head_list = [self.heads[n] for n in self.task_names]

    def heads_forward(self, rep: torch.Tensor) -> list[torch.Tensor]:
        return [head(rep) for head in self._head_list]

    def head_modules(self) -> list[nn.Module]:
        """Each task's head, in task order: ``heads_forward(rep)[t] == head_modules()[t](rep)``."""
        return list(self._head_list)

    def linear_heads(self) -> list[nn.Linear] | None:
        """Each head's only layer when every head is one linear layer on the shared
        representation (then task Gramians have a closed form), else None."""
        return None

    def shared_chain(self) -> nn.Sequential | None:
        """The stack of layers whose output is the representation, when there is one (an
        MLP trunk): parameter-level balancing then takes its per-task gradients by hand
        (:mod:`polytask.balancing.chain_jacobian`). The engine checks at every step that
        the chain's output is the representation, and otherwise uses autograd."""
        return None

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that every task's gradient flows into (everything but the heads)."""
        head_ids = {id(p) for h in self.head_modules() for p in h.parameters()}
        return [p for p in self.parameters() if id(p) not in head_ids]

    def forward_list(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Outputs in task order (the trainer's hot path)."""
        return self.compose(self.heads_forward(self.representation(*inputs)))

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.task_names, self.forward_list(*inputs), strict=True))


def fused_linear(heads: list[nn.Linear], rep: torch.Tensor) -> torch.Tensor:
    """Several linear heads on one (N, H) representation as one matrix product: their
    outputs side by side, (N, Σ out_features)."""
    if len(heads) == 1:
        return heads[0](rep)
    weight = torch.cat([h.weight for h in heads])
    if all(h.bias is None for h in heads):
        return rep @ weight.T
    bias = torch.cat(
        [h.bias if h.bias is not None else h.weight.new_zeros(h.out_features) for h in heads]
    )
    return torch.addmm(bias, rep, weight.T)


def task_head(
    in_features: int, head_hidden: list[int], activation: str, dropout: float, task: Task
) -> nn.Sequential:
    """A task's tower: ``head_hidden`` layers, then a linear layer to the task's output,
    its bias started at the task's base rate."""
    body = mlp(in_features, head_hidden, activation, dropout)
    last = nn.Linear(head_hidden[-1] if head_hidden else in_features, task.output_size)
    head = nn.Sequential(*body, last)
    init_head_bias(head, task)
    return head


def dense_needs_image(task: Task) -> PolytaskError:
    return PolytaskError(
        f"task '{task.name}' ({task.kind}) predicts per pixel: it needs one image column as "
        "the only feature (features.include holding just it) and architecture 'hard'"
    )


def init_head_bias(head: nn.Module, task: Task) -> None:
    """Start the head's last linear layer at the task's base rate (e.g. log-odds)."""
    bias = task.initial_bias()
    last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    if bias is not None and last.bias is not None:
        with torch.no_grad():
            last.bias.copy_(bias.to(last.bias))


def load_weights(net: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """The run's weights into ``net``. Only a module that loaded its own weights when it
    was built (``weights_from``: a run from before the frozen sentence encoder's weights
    were saved, which read them from the model package) may be absent from them."""
    missing, unexpected = net.load_state_dict(weights, strict=False)
    own = [name + "." for name, m in net.named_modules() if getattr(m, "weights_from", None)]
    missing = [k for k in missing if not any(k.startswith(p) for p in own)]
    if missing or unexpected:
        keys = (missing or unexpected)[:3]
        what = "lacks" if missing else "has unexpected"
        raise ValueError(f"the weights file {what} {', '.join(keys)}")
