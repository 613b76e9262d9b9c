"""Cross-stitch networks (Misra et al. 2016): one column of layers per task, and after
each layer a cross-stitch unit that mixes the columns, ``x̃_t = Σ_s α_ts x_s``.

Each column has the widths of ``model.hidden`` and reads the shared input embedding x.
The α of every unit start at ``init`` on the diagonal (a column's own activations) and
``(1 - init) / (T - 1)`` elsewhere, as in the paper (0.9 / 0.1 for two tasks).

Gradient split: the units mix every column into every other, so the columns are not
private to their tasks: every column and every unit below the last reaches all tasks and
is shared. Only the last unit's row t (how task t mixes the final column outputs) is
task t's alone. So the representation is the columns' last outputs before that unit,
``[x_1, ..., x_T]``, and task t's head is its row ``α_t`` of the last unit and its tower.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from polytask.architectures.base import ArchitectureOptions, ArchitectureSpec, task_head
from polytask.architectures.parallel_mlp import ParallelLayer
from polytask.architectures.shared_layers import SharedLayersNet


class CrossStitchOptions(ArchitectureOptions):
    #: starting weight of a column's own activations in each cross-stitch unit; the rest,
    #: 1 - init, is split evenly over the other tasks' columns (1.0: independent columns)
    init: float = Field(0.9, gt=0, le=1)


def stitch_init(n_tasks: int, init: float) -> torch.Tensor:
    """The (T, T) starting α: ``init`` on the diagonal, the rest of each row spread evenly."""
    if n_tasks == 1:
        return torch.ones(1, 1)
    alpha = torch.full((n_tasks, n_tasks), (1.0 - init) / (n_tasks - 1))
    alpha.fill_diagonal_(init)
    return alpha


def stitch(alpha: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """α (T, T) or one row (T,), columns (N, T, H) -> (N, T, H) or (N, H)."""
    return torch.matmul(alpha, columns)


class StitchedHead(nn.Module):
    """Task t's head: its row of the last cross-stitch unit, then its tower."""

    def __init__(self, alpha: torch.Tensor, width: int, tower: nn.Module):
        super().__init__()
        self.alpha = nn.Parameter(alpha.clone())
        self.width = width
        self.tower = tower

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        columns = rep.reshape(rep.shape[0], -1, self.width)
        return self.tower(stitch(self.alpha, columns))


class CrossStitch(SharedLayersNet):
    name = "cross_stitch"
    Options = CrossStitchOptions

    def __init__(self, spec: ArchitectureSpec):
        super().__init__(spec)
        opts = spec.options or CrossStitchOptions()
        assert isinstance(opts, CrossStitchOptions)
        widths = self.widths(None, spec.hidden, "model.hidden")
        tasks = spec.tasks
        head_hidden, activation, dropout = list(spec.head_hidden), spec.activation, spec.dropout
        norm = spec.norm
        n_tasks = len(tasks)
        self.encoder = encoder = spec.encoder
        ins = [encoder.out_features, *widths[:-1]]
        self.columns = nn.ModuleList(
            ParallelLayer(n_tasks, i, w, activation, dropout, norm)
            for i, w in zip(ins, widths, strict=True)
        )
        alpha = stitch_init(n_tasks, opts.init)
        # the units below the last, stored flat (1-D: no weight decay on mixing weights)
        self.stitches = nn.ParameterList(nn.Parameter(alpha.flatten().clone()) for _ in widths[:-1])
        self._n = n_tasks
        heads = {}
        for t, task in enumerate(tasks):
            tower = task_head(widths[-1], head_hidden, activation, dropout, task)
            heads[task.name] = StitchedHead(alpha[t], widths[-1], tower)
        self._set_heads(heads)

    def representation(self, *inputs: torch.Tensor) -> torch.Tensor:
        h = self.encoder(*inputs)  # (N, D), read by every column
        for j, layer in enumerate(self.columns):
            h = layer(h)  # (N, T, H_j)
            if j < len(self.stitches):
                h = stitch(self.stitches[j].view(self._n, self._n), h)
        return h.flatten(1)
