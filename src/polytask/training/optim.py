"""Optimiser and learning-rate schedule from the training config."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from polytask.config import TrainingConfig
from polytask.config.table_defaults import fixed, value

#: without early stopping (``patience: null``) the plateau schedule still waits a third
#: of this (the schema's default patience before patience was chosen from the table)
_DEFAULT_PATIENCE = 10


def _own_rates(net: nn.Module) -> list[dict[str, Any]]:
    """Groups of parameters that modules train at their own learning rate: any module
    with a ``param_groups()`` method (a pretrained backbone) lists them."""
    groups: list[dict[str, Any]] = []
    for module in net.modules():
        listed = getattr(module, "param_groups", None)
        if callable(listed):
            groups += listed()
    return groups


def _by_decay(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices, none on biases and norms."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(
    net: nn.Module, cfg: TrainingConfig, extra: list[nn.Parameter], device: torch.device
) -> torch.optim.Optimizer:
    """AdamW, fused where the device supports it; no weight decay on biases and norms.
    The first groups train at ``cfg.lr``; parameters a module lists with a rate of
    their own (see :func:`_own_rates`) follow, one pair of groups per rate."""
    own = _own_rates(net)
    claimed = {id(p) for g in own for p in g["params"]}
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in claimed]
    groups = _by_decay(rest, cfg.weight_decay)
    groups[1]["params"] += list(extra)
    for g in own:
        trainable = [p for p in g["params"] if p.requires_grad]
        groups += [{**part, "lr": g["lr"]} for part in _by_decay(trainable, cfg.weight_decay)]
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, lr=value(cfg, "lr"), fused=True)
    except (RuntimeError, TypeError):  # fused not available for this device/dtype
        return torch.optim.AdamW(groups, lr=value(cfg, "lr"), foreach=True)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainingConfig
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """A per-epoch schedule: linear warm-up, then cosine decay to 5% (or constant)."""
    values = fixed(cfg)
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=0.5,
            patience=max(1, (values.patience or _DEFAULT_PATIENCE) // 3),
        )
    warm, total = cfg.warmup_epochs, values.epochs

    def factor(epoch: int) -> float:
        if warm and epoch < warm:
            return (epoch + 1) / (warm + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = (epoch - warm) / max(1, total - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    if cfg.schedule == "constant" and not warm:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_scheduler(scheduler: Any, monitor: float) -> None:
    """The epoch-end step: the plateau schedule watches the monitored value."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitor)
    elif scheduler is not None:
        scheduler.step()


class StepWarmup:
    """``training.warmup_steps``: every group's learning rate rises linearly over the
    first optimiser steps (step s of W runs at s / (W + 1) of its rate), on top of the
    per-epoch schedule, which it leaves untouched. It depends on the step count only,
    so a resumed run warms up exactly as an uninterrupted one."""

    def __init__(self, steps: int):
        self.steps = steps

    @contextlib.contextmanager
    def at(self, optimizer: torch.optim.Optimizer, global_step: int) -> Iterator[None]:
        """Inside, every group runs at the warm-up's fraction of its rate while it lasts;
        the rates are back afterwards (wraps whatever steps the optimiser: fp16's scaler)."""
        if global_step > self.steps:
            yield
            return
        fraction = global_step / (self.steps + 1)
        rates = [g["lr"] for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g["lr"] = g["lr"] * fraction
        try:
            yield
        finally:
            for g, lr in zip(optimizer.param_groups, rates, strict=True):
                g["lr"] = lr

    def step(self, optimizer: torch.optim.Optimizer, global_step: int) -> None:
        """``optimizer.step()`` at the warm-up's rates."""
        with self.at(optimizer, global_step):
            optimizer.step()
