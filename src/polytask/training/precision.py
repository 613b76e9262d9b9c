"""Automatic mixed precision: ``training.precision`` (auto, fp32, bf16, fp16).

``auto`` is bf16 on a GPU that supports it, fp16 with a gradient scaler on one that does
not, and fp32 on a CPU (where autocast rarely pays). Only the network's forward pass runs
under autocast; its outputs are cast back to fp32 before the losses, so the losses, the
task Jacobian, the Gramian and every balancing method see fp32 tensors (a cast node in
the graph brings the fp32 gradients back into the low-precision backward). fp16 needs
loss scaling: a loss-level step backpropagates through ``torch.amp.GradScaler``, which
unscales before clipping and skips steps whose gradients overflowed. A gradient-level
step under fp16 would need the same scaling per task row of the Jacobian; it runs in
fp32 instead (bf16 needs no scaling and covers both kinds of step).
"""

from __future__ import annotations

import contextlib

import torch

_OFF = contextlib.nullcontext()


def resolve(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``training.precision`` on ``device``; None is fp32."""
    if name == "fp32":
        return None
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if name == "bf16" else torch.float16


class Precision:
    """The step's autocast context and, for fp16, its gradient scaler."""

    def __init__(self, name: str, device: torch.device, gradient_level: bool = False):
        dtype = resolve(name, device)
        if dtype == torch.float16 and gradient_level:
            dtype = None  # see the module docstring
        self.dtype = dtype
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.dtype is None:
            return _OFF
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        params: list[torch.nn.Parameter],
        clip: float | None,
    ) -> None:
        """Clip (unscaled) and step; with a scaler, skip an overflowed step and adapt."""
        if self.scaler is None:
            plain_step(optimizer, params, clip)
            return
        self.scaler.unscale_(optimizer)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        self.scaler.step(optimizer)
        self.scaler.update()


def plain_step(
    optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], clip: float | None
) -> None:
    """Clip (if asked) and step: what fp32 and bf16 training do."""
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
    optimizer.step()


def to_fp32(outs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [o.float() for o in outs]
