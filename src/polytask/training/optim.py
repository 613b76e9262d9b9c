"""Optimiser and learning-rate schedule from the training config."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from polytask.config import TrainingConfig

#: without early stopping (``patience: null``) the plateau schedule still waits a third
#: of the schema's default patience
_DEFAULT_PATIENCE: int = TrainingConfig.model_fields["patience"].default


def make_optimizer(
    net: nn.Module, cfg: TrainingConfig, extra: list[nn.Parameter], device: torch.device
) -> torch.optim.Optimizer:
    """AdamW, fused where the device supports it; no weight decay on biases and norms."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in net.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay + list(extra), "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):  # fused not available for this device/dtype
        return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainingConfig
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """A per-epoch schedule: linear warm-up, then cosine decay to 5% (or constant)."""
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=0.5,
            patience=max(1, (cfg.patience or _DEFAULT_PATIENCE) // 3),
        )
    warm, total = cfg.warmup_epochs, cfg.epochs

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
