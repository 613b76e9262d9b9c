"""Multi-gate Mixture-of-Experts (Ma et al. 2018): shared experts, one softmax gate and
one tower per task, ``y_t = tower_t(Σ_i softmax(W_t x)_i · expert_i(x))``.

Gradient split: the representation is ``[x, expert_1(x), ..., expert_n(x)]`` (the input
embedding, which the gates read, and every expert's output); each task's head is its
gate and its tower, so the gates' parameters belong to their tasks and the experts and
embeddings are shared.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import PositiveInt

from polytask.architectures.base import ArchitectureSpec, task_head
from polytask.architectures.gating import GatedHead, GatedOptions, expert_widths
from polytask.architectures.parallel_mlp import ParallelMLP
from polytask.architectures.shared_layers import SharedLayersNet


class MMoEOptions(GatedOptions):
    #: number of shared experts
    experts: PositiveInt = 8
    #: widths of each expert's layers. A new run states them in its config, by default
    #: one layer of model.hidden[0] / experts, so the experts together are about the size
    #: of the hard-sharing trunk; left unset (runs saved before that default) each expert
    #: has the widths of model.hidden
    expert_hidden: list[PositiveInt] | None = None


class MMoE(SharedLayersNet):
    name = "mmoe"
    Options = MMoEOptions

    @classmethod
    def pinned_options(
        cls, options: dict[str, Any], hidden: list[int], n_tasks: int
    ) -> dict[str, Any]:
        """A new run's experts, stated: one layer of model.hidden[0] / experts each."""
        if options.get("expert_hidden") is not None:
            return options
        experts = options.get("experts", MMoEOptions.model_fields["experts"].default)
        if not isinstance(experts, int) or experts < 1:
            return options  # building the network names the bad value
        return {**options, "expert_hidden": expert_widths(hidden, experts)}

    def __init__(self, spec: ArchitectureSpec):
        super().__init__(spec)
        opts = spec.options or MMoEOptions()
        assert isinstance(opts, MMoEOptions)
        widths = self.widths(opts.expert_hidden, spec.hidden, "expert_hidden")
        self.encoder = encoder = spec.encoder
        head_hidden, activation, dropout = list(spec.head_hidden), spec.activation, spec.dropout
        norm = spec.norm
        d, width = encoder.out_features, widths[-1]
        self.experts = ParallelMLP(opts.experts, d, widths, activation, dropout, norm)
        heads = {}
        for task in spec.tasks:
            tower = task_head(width, head_hidden, activation, dropout, task)
            heads[task.name] = GatedHead(0, d, opts.experts, width, None, tower, opts.gate_init)
        self._set_heads(heads)

    def representation(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = self.encoder(*inputs)
        return torch.cat([x, self.experts(x).flatten(1)], dim=1)
