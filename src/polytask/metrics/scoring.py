"""Running a network over a split and scoring each task on its labelled rows."""

from __future__ import annotations

from typing import Any

import torch

from polytask.architectures import MultiTaskNet
from polytask.features.preprocess import FeatureTensors
from polytask.tasks import Task, metric_direction
from polytask.tasks.grouped import grouped_losses


@torch.inference_mode()
def raw_outputs(
    net: MultiTaskNet,
    features: FeatureTensors,
    batch_size: int,
    device: torch.device,
    lead: tuple[torch.Tensor, ...] = (),
) -> list[torch.Tensor]:
    """Outputs of every task over all rows, in task order, on the CPU. ``lead`` inputs
    go before the features' own (a multi-source network's source index)."""
    was_training = net.training
    if was_training:  # eval() walks every module: skipped where it would change nothing
        net.eval()
    chunks: list[list[torch.Tensor]] = []
    n = len(features)
    for s in range(0, n, batch_size):
        inputs = [x.to(device, non_blocking=True) for x in features.rows(s, s + batch_size)]
        chunks.append([o.float().cpu() for o in net.forward_list(*lead, *inputs)])
    if was_training:
        net.train()
    if not chunks:
        return []
    if len(chunks) == 1:
        return chunks[0]
    return [torch.cat(parts) for parts in zip(*chunks, strict=True)]


def split_outputs(
    net: MultiTaskNet, table: Any, batch_size: int, device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """``(outputs, targets, masks)`` per task over a split; the table says which rows
    each task is scored on (``scoring_parts``: all of them, or its own source's), and
    each part comes in chunks (itself in memory, a row group at a time when streamed)."""
    n_tasks = sum(len(own) for _, own, _ in table.scoring_parts(device))
    outs: list[Any] = [None] * n_tasks
    targets: list[Any] = [None] * n_tasks
    masks: list[Any] = [None] * n_tasks
    for part, own, lead in table.scoring_parts(device):
        if not len(part):  # no rows of this part in the split
            for t in own:
                targets[t], masks[t] = part.targets[t], part.masks[t]
                outs[t] = torch.zeros((0, *net_output_shape(part, t)))
            continue
        part_outs, part_targets, part_masks = _chunked(net, part, batch_size, device, lead)
        for t in own:
            outs[t], targets[t], masks[t] = part_outs[t], part_targets[t], part_masks[t]
    return outs, targets, masks


def _chunked(
    net: MultiTaskNet,
    part: Any,
    batch_size: int,
    device: torch.device,
    lead: tuple[torch.Tensor, ...],
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """A part's outputs, targets and masks per task, read chunk by chunk (of a streamed
    split only these small per-task arrays are held, never its features)."""
    outs, targets, masks = [], [], []
    for chunk in part.chunks():
        outs.append(raw_outputs(net, chunk.features, batch_size, device, lead))
        targets.append(list(chunk.targets))
        masks.append(list(chunk.masks))
    if len(outs) == 1:
        return outs[0], targets[0], masks[0]
    return tuple(  # type: ignore[return-value]
        [torch.cat(parts) for parts in zip(*lists, strict=True)] for lists in (outs, targets, masks)
    )


def net_output_shape(part: Any, t: int) -> tuple[int, ...]:
    """A placeholder output shape for an empty split (scores come out None, n 0)."""
    target = part.targets[t]
    return (1,) if target.ndim == 1 else tuple(target.shape[1:])


def task_losses(
    tasks: list[Task],
    outputs: list[torch.Tensor],
    targets: list[torch.Tensor],
    masks: list[torch.Tensor],
) -> dict[str, float]:
    with torch.inference_mode():
        losses = grouped_losses(
            tasks,
            outputs,
            [y.to(o.device) for y, o in zip(targets, outputs, strict=True)],
            [m.to(o.device) for m, o in zip(masks, outputs, strict=True)],
        )
        values = torch.stack(losses).tolist()  # one read-back
    return {t.name: float(v) for t, v in zip(tasks, values, strict=True)}


def score(
    tasks: list[Task],
    outputs: list[torch.Tensor],
    targets: list[torch.Tensor],
    masks: list[torch.Tensor],
) -> dict[str, dict[str, Any]]:
    """``{task: {metric: value or None, ..., "n": labelled rows}}``."""
    result: dict[str, dict[str, Any]] = {}
    for t, o, y, m in zip(tasks, outputs, targets, masks, strict=True):
        out, tgt, mask = o.numpy(), y.cpu().numpy(), m.cpu().numpy()
        metrics = t.metrics(out, tgt, mask)
        metrics["n"] = t.n_labelled(mask)
        result[t.name] = metrics
    return result


def higher_is_better(metric: str) -> bool:
    """A metric's direction as the task kinds declare it (``Task.directions``); ``loss``
    is lower-is-better and a name no kind reports counts as higher-is-better."""
    return metric_direction(metric) is not False
