"""Progressive Layered Extraction (Tang et al. 2020): stacked extraction levels, each
with shared experts and every task's own experts.

At level j, task t's gate mixes its own experts and the shared ones,
``g_t^j = softmax(W_t^j g_t^{j-1}) · [E_t^j(g_t^{j-1}), E_s^j(g_s^{j-1})]``, and (below the
last level) a shared gate mixes all experts of the level,
``g_s^j = softmax(W_s^j g_s^{j-1}) · [E_1^j, ..., E_T^j, E_s^j]``, with ``g^0 = x``, the
input embedding. Task t's tower reads ``g_t^L``. One level is CGC (:mod:`.cgc`).

Gradient split: below the last level the shared gates mix every task's experts, so all of
it is shared. The representation is what the last level reads,
``[g_1^{L-1}, ..., g_T^{L-1}, E_s^L(g_s^{L-1})]`` (for one level ``[x, E_s(x)]``), and task
t's head is its last-level experts, its last-level gate and its tower: the parts only
task t's loss reaches.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import NonNegativeInt, PositiveInt
from torch import nn

from polytask.architectures.base import ArchitectureOptions, ArchitectureSpec, task_head
from polytask.architectures.gating import (
    GatedHead,
    GatedOptions,
    expert_widths,
    make_gate,
    mix,
)
from polytask.architectures.parallel_mlp import ParallelMLP
from polytask.architectures.shared_layers import SharedLayersNet


class ExtractionOptions(GatedOptions):
    #: experts every task's gate sees, per level
    shared_experts: PositiveInt = 2
    #: each task's own experts, per level (0: only shared experts)
    task_experts: NonNegativeInt = 1
    #: widths of each expert's layers. A new run states them in its config, by default one
    #: layer of model.hidden[0] divided by the experts of a level (shared_experts + tasks
    #: x task_experts), so each level is about the size of the hard trunk's first layer;
    #: left unset (runs saved before that default) each expert has model.hidden's widths
    expert_hidden: list[PositiveInt] | None = None


class PLEOptions(ExtractionOptions):
    #: number of extraction levels (1 is CGC)
    levels: PositiveInt = 2


class ExtractionLevel(nn.Module):
    """One level below the last: task and shared experts, task gates and the shared gate."""

    def __init__(
        self,
        n_tasks: int,
        in_features: int,
        opts: ExtractionOptions,
        widths: list[int],
        activation: str,
        dropout: float,
        norm: str,
    ):
        super().__init__()
        s, e = opts.shared_experts, opts.task_experts

        def bank(n: int) -> ParallelMLP:
            return ParallelMLP(n, in_features, widths, activation, dropout, norm)

        self.task_experts = nn.ModuleList(bank(e) for _ in range(n_tasks)) if e else None
        self.shared_experts = bank(s)
        # a single expert's gate is None: ModuleList keeps the slot empty
        init = opts.gate_init
        gates = [make_gate(in_features, e + s, init) for _ in range(n_tasks)]
        self.task_gates = nn.ModuleList(gates)  # type: ignore[arg-type]
        self.shared_gate = make_gate(in_features, n_tasks * e + s, init)

    def forward(
        self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        shared = self.shared_experts(shared_input)
        if self.task_experts is None:
            own = [shared[:, :0]] * len(task_inputs)
        else:
            own = [bank(u) for bank, u in zip(self.task_experts, task_inputs, strict=True)]
        task_out = [
            mix(gate, u, torch.cat([o, shared], dim=1))  # type: ignore[arg-type]
            for gate, u, o in zip(self.task_gates, task_inputs, own, strict=True)
        ]
        shared_out = mix(self.shared_gate, shared_input, torch.cat([*own, shared], dim=1))
        return task_out, shared_out


class PLE(SharedLayersNet):
    name = "ple"
    Options: ClassVar[type[ArchitectureOptions]] = PLEOptions

    @classmethod
    def pinned_options(
        cls, options: dict[str, Any], hidden: list[int], n_tasks: int
    ) -> dict[str, Any]:
        """A new run's experts, stated: model.hidden[0] shared out among a level's experts."""
        if options.get("expert_hidden") is not None:
            return options
        fields = cls.Options.model_fields
        shared = options.get("shared_experts", fields["shared_experts"].default)
        own = options.get("task_experts", fields["task_experts"].default)
        if not all(isinstance(v, int) and v >= 0 for v in (shared, own)):
            return options  # building the network names the bad value
        per_level = max(1, shared + n_tasks * own)
        return {**options, "expert_hidden": expert_widths(hidden, per_level)}

    def __init__(self, spec: ArchitectureSpec):
        super().__init__(spec)
        opts = spec.options or self.Options()
        assert isinstance(opts, ExtractionOptions)
        levels = self.levels_of(opts)
        widths = self.widths(opts.expert_hidden, spec.hidden, "expert_hidden")
        self.encoder = encoder = spec.encoder
        tasks = spec.tasks
        head_hidden, activation, dropout = list(spec.head_hidden), spec.activation, spec.dropout
        norm = spec.norm
        d, width, n_tasks = encoder.out_features, widths[-1], len(tasks)
        self.lower = nn.ModuleList(
            ExtractionLevel(
                n_tasks, d if j == 0 else width, opts, widths, activation, dropout, norm
            )
            for j in range(levels - 1)
        )
        top_in = d if levels == 1 else width
        self.shared_experts = ParallelMLP(
            opts.shared_experts, top_in, widths, activation, dropout, norm
        )
        heads = {}
        for t, task in enumerate(tasks):
            start = 0 if levels == 1 else t * width  # one level: every task reads x
            own = (
                ParallelMLP(opts.task_experts, top_in, widths, activation, dropout, norm)
                if opts.task_experts
                else None
            )
            tower = task_head(width, head_hidden, activation, dropout, task)
            heads[task.name] = GatedHead(
                start, start + top_in, opts.shared_experts, width, own, tower, opts.gate_init
            )
        self._set_heads(heads)

    @staticmethod
    def levels_of(opts: ExtractionOptions) -> int:
        assert isinstance(opts, PLEOptions)
        return opts.levels

    def representation(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = self.encoder(*inputs)
        if not self.lower:
            return torch.cat([x, self.shared_experts(x).flatten(1)], dim=1)
        task_in, shared_in = [x] * len(self.task_names), x
        for level in self.lower:
            task_in, shared_in = level(task_in, shared_in)
        return torch.cat([*task_in, self.shared_experts(shared_in).flatten(1)], dim=1)
