"""Training augmentation of image batches: random horizontal flips and random resized
crops, on the batch's device, with per-pixel labels moved alike; off at evaluation.

Plain torch rather than ``torchvision.transforms.v2``: PyPI's torchvision does not load
with the CPU build of torch this project pins. Both transforms are one affine map per
image (a crop of area share ``s`` in [crop, 1] and aspect ratio in [3/4, 4/3], like
torchvision's ``RandomResizedCrop``, mirrored when flipped), applied to the whole batch
by one ``grid_sample``: bilinear for images, nearest for label maps and their masks, so
class ids stay class ids. Flips alone are exact mirrors, with no resampling. The random
draws come from the augmenter's own generator (seeded from ``training.seed``), so the
shuffle order does not depend on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from polytask.features.batches import Batch


@dataclass
class Augment:
    """``batch -> augmented batch`` for the trainer (see the module docstring)."""

    #: positions of the image columns in ``Batch.extra``
    image_slots: list[int]
    #: task indices whose targets (and masks) are per-pixel maps
    dense: list[int]
    flip: bool = False
    #: smallest area share a random resized crop keeps; None: no crop
    crop: float | None = None
    seed: int = 0
    generator: torch.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def theta(self, n: int) -> torch.Tensor:
        """(n, 2, 3) affine maps from output to input coordinates ([-1, 1] both)."""
        g = self.generator
        w = torch.ones(n)
        h = torch.ones(n)
        if self.crop is not None:
            area = self.crop + (1 - self.crop) * torch.rand(n, generator=g)
            log_ratio = (torch.rand(n, generator=g) * 2 - 1) * math.log(4 / 3)
            ratio = log_ratio.exp()
            w = (area * ratio).sqrt().clamp(max=1.0)
            h = (area / ratio).sqrt().clamp(max=1.0)
        cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - w)
        cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - h)
        if self.flip:
            w = torch.where(torch.rand(n, generator=g) < 0.5, -w, w)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = w, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        return theta

    def __call__(self, batch: Batch) -> Batch:
        if not (self.flip or self.crop is not None) or not self.image_slots:
            return batch
        first = batch.extra[self.image_slots[0]]
        if self.crop is None:  # flips alone: exact, no resampling
            flip = (torch.rand(first.shape[0], generator=self.generator) < 0.5).to(first.device)

            def move(x: torch.Tensor, mode: str) -> torch.Tensor:
                return torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
        else:
            theta = self.theta(first.shape[0]).to(first.device)

            def move(x: torch.Tensor, mode: str) -> torch.Tensor:
                return _resample(x, theta, mode)

        extra = list(batch.extra)
        for i in self.image_slots:
            extra[i] = move(extra[i], "bilinear")
        targets, masks = list(batch.targets), list(batch.masks)
        for t in self.dense:
            targets[t] = move(targets[t], "nearest")
            mask = masks[t]
            if mask is not None and mask.dim() == 3:
                masks[t] = move(mask, "nearest")
        return replace(batch, extra=tuple(extra), targets=targets, masks=masks)


def _resample(x: torch.Tensor, theta: torch.Tensor, mode: str) -> torch.Tensor:
    """(N, C, H, W) images, or (N, H, W) label maps of any dtype (``nearest``: values
    are never mixed), resampled through ``theta`` at their own size."""
    maps = x.dim() == 3
    y = x[:, None].float() if maps else x
    grid = F.affine_grid(theta.to(y.dtype), list(y.shape), align_corners=False)
    out = F.grid_sample(y, grid, mode=mode, align_corners=False)
    return out[:, 0].to(x.dtype) if maps else out
