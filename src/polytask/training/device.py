"""Which device training runs on: ``training.device`` (auto, cpu, cuda, cuda:N)."""

from __future__ import annotations

import torch

from polytask.errors import PolytaskError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PolytaskError(f"unknown device '{name}'; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PolytaskError("device 'cuda' was asked for but no GPU is available; use cpu")
    return device
