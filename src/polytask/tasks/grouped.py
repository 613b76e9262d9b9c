"""Loss values of many tasks at once, for passes that need no gradient.

FAMO's second forward and the affinity lookahead read every task's loss on a batch. With
twenty tasks that is twenty small loss calls; tasks of one kind with one output each (a
regression, binary or count head) can instead be computed as the columns of one (N, G)
matrix: a handful of operations whatever the number of tasks. Each kind declares how
(``Task.group_key`` and ``Task.columns_loss``, next to its own loss); other tasks keep
their own call.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from polytask.tasks.base import Task


def grouped_losses(
    tasks: Sequence[Task],
    outs: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor | None],
) -> list[torch.Tensor]:
    """Each task's (masked) mean loss, in task order, as ``Task.loss`` gives it (equal up
    to rounding). For use without autograd: the results share one graph node per group."""
    losses: list[torch.Tensor | None] = [None] * len(tasks)
    groups: dict[tuple[type[Task], Hashable], list[int]] = {}
    for i, (task, out) in enumerate(zip(tasks, outs, strict=True)):
        key = task.group_key()
        if key is None or out.dim() != 2 or out.shape[1] != 1:
            losses[i] = task.loss(out, targets[i], masks[i])
        else:
            groups.setdefault((type(task), key), []).append(i)
    for (cls, _), idx in groups.items():
        if len(idx) == 1:
            i = idx[0]
            losses[i] = tasks[i].loss(outs[i], targets[i], masks[i])
            continue
        output = torch.cat([outs[i] for i in idx], dim=1)
        target = torch.stack([targets[i] for i in idx], dim=1).to(output.dtype)
        per_row = cls.columns_loss([tasks[i] for i in idx], output, target)
        if all(masks[i] is None for i in idx):
            values = per_row.mean(0)
        else:
            m = torch.stack(
                [
                    torch.ones(output.shape[0], dtype=torch.bool, device=output.device)
                    if (mask := masks[i]) is None
                    else mask
                    for i in idx
                ],
                dim=1,
            ).to(per_row.dtype)
            values = (per_row * m).sum(0) / m.sum(0).clamp_min(1.0)
        for i, v in zip(idx, values.unbind(), strict=True):
            losses[i] = v
    return [loss for loss in losses if loss is not None]
