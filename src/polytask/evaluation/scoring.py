"""Running a network over a split and scoring each task on its labelled rows."""

from __future__ import annotations

from typing import Any

import torch

from polytask.architectures import MultiTaskNet
from polytask.features.preprocess import FeatureTensors
from polytask.tasks import Task

#: metrics where lower is better; every other metric is higher-is-better
LOWER_IS_BETTER = frozenset({"loss", "mae", "rmse", "log_loss"})


@torch.inference_mode()
def raw_outputs(
    net: MultiTaskNet, features: FeatureTensors, batch_size: int, device: torch.device
) -> list[torch.Tensor]:
    """Outputs of every task over all rows, in task order, on the CPU."""
    was_training = net.training
    net.eval()
    chunks: list[list[torch.Tensor]] = []
    n = len(features)
    for s in range(0, n, batch_size):
        num = features.numeric[s : s + batch_size].to(device, non_blocking=True)
        cat = features.categorical[s : s + batch_size].to(device, non_blocking=True)
        chunks.append([o.float().cpu() for o in net.forward_list(num, cat)])
    net.train(was_training)
    if not chunks:
        return []
    return [torch.cat(parts) for parts in zip(*chunks, strict=True)]


def task_losses(
    tasks: list[Task],
    outputs: list[torch.Tensor],
    targets: list[torch.Tensor],
    masks: list[torch.Tensor],
) -> dict[str, float]:
    with torch.inference_mode():
        return {
            t.name: float(t.loss(o, y.to(o.device), m.to(o.device)))
            for t, o, y, m in zip(tasks, outputs, targets, masks, strict=True)
        }


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
    return metric not in LOWER_IS_BETTER
