"""Tasks whose output is composed from other tasks' outputs (an entire-space task reads
its parent's click logit), applied once after the heads.

A task declares the tasks it reads with :meth:`Task.composes_with` and combines their raw
outputs with its own head's in :meth:`Task.compose`; the network runs the heads, then
the compositions (:func:`compose_outputs`), so training, evaluation, ``predict`` and
``serve`` all see the composed outputs. A composing task's loss then reaches its
parents' heads too, which is the point (ESMM trains the click head on the product).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from polytask.errors import PolytaskError, did_you_mean
from polytask.tasks.base import Task

#: per composing task: (its index, the indices of the tasks it reads)
Plan = list[tuple[int, list[int]]]


def composition(tasks: Sequence[Task]) -> Plan:
    """The plan for ``tasks``; a name that is no task, the task itself or another
    composing task is an error (compositions read the heads' own outputs)."""
    names = [t.name for t in tasks]
    plan: Plan = []
    for i, task in enumerate(tasks):
        reads = list(task.composes_with())
        if not reads:
            continue
        parents: list[int] = []
        for name in reads:
            if name not in names or name == task.name:
                raise PolytaskError(
                    f"task '{task.name}' ({task.kind}) reads task '{name}', which is "
                    f"{'itself' if name == task.name else 'not one of the tasks'}"
                    f"{did_you_mean(name, names)}; name another task of the run"
                )
            parent = tasks[names.index(name)]
            if parent.composes_with():
                raise PolytaskError(
                    f"task '{task.name}' reads task '{name}', which is composed itself; "
                    "read a task with its own head"
                )
            task.check_parent(parent)
            parents.append(names.index(name))
        plan.append((i, parents))
    return plan


def compose_outputs(
    tasks: Sequence[Task], plan: Plan, outs: list[torch.Tensor]
) -> list[torch.Tensor]:
    """The heads' outputs with each composing task's replaced by its composition."""
    if not plan:
        return outs
    composed = list(outs)
    for i, parents in plan:
        composed[i] = tasks[i].compose(outs[i], [outs[j] for j in parents])
    return composed


def composing_task(tasks: Sequence[Task]) -> Task | None:
    """The first task whose output is composed from others', or None."""
    return next((t for t in tasks if t.composes_with()), None)
