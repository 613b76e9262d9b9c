"""Image columns through a named backbone (``model.image.backbone: resnet18``, ...).

The backbone sees what its pretrained weights were trained on: the column's fitted
standardisation is undone and the backbone's own normalisation (ImageNet mean and std,
timm's ``pretrained_cfg``) applied, grey images repeated onto three channels, and the
images resized to ``input_size``; all of it inside the model, so a saved run, ``serve``
and the ONNX graph take the same raw images as ``cnn`` does. Per-image tasks read the
last stage pooled onto a grid; per-pixel tasks (and MTAN) get the four stages merged by
a light FPN (Lin et al. 2017) into one map at stride 4, which the dense heads decode.
The weights load only when training starts (:func:`load_pretrained`): a saved run loads
its own fine-tuned weights and never reads the pretrained file again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from polytask.encoders.cnn import GridPool, ImageEncoderOptions
from polytask.encoders.image_weights import load_weights, weights_path
from polytask.encoders.resnet import BACKBONES, ResNet


def input_size(options: ImageEncoderOptions) -> int | None:
    """The square size images are resized to, None to keep theirs (see the option)."""
    if options.input_size is not None:
        return options.input_size
    return BACKBONES[options.backbone].input_size if options.weights_wanted else None


class BackboneFeatures(nn.Module):
    """Standardised (N, C, H, W) images -> the backbone's four stage maps."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        options: ImageEncoderOptions,
    ):
        super().__init__()
        spec = BACKBONES[options.backbone]
        self.name = spec.name
        self.in_channels = in_channels
        self.size = input_size(options)
        self.pretrained = options.pretrained
        # x_raw = x * std_col + mean_col; backbone input = (x_raw - mean_bb) / std_bb
        col_m = torch.tensor(list(mean), dtype=torch.float32)
        col_s = torch.tensor(list(std), dtype=torch.float32)
        take = [min(c, in_channels - 1) if in_channels >= 3 else 0 for c in range(3)]
        bb_m, bb_s = torch.tensor(spec.mean), torch.tensor(spec.std)
        scale = col_s[take] / bb_s
        shift = (col_m[take] - bb_m) / bb_s
        self.take = take
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)
        self.body = ResNet(spec)
        self.channels = self.body.channels

    def backbone_input(self, images: torch.Tensor) -> torch.Tensor:
        x = images[:, self.take] if self.take != [0, 1, 2] else images
        x = x * self.scale + self.shift
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x

    def stage_outputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.body.stage_outputs(self.backbone_input(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stage_outputs(images)[-1]

    def load_pretrained(self) -> Path | None:
        """Load the weights the options ask for (None: a random start)."""
        path = weights_path(BACKBONES[self.name], self.pretrained)
        if path is not None:
            load_weights(self.body, path, self.name)
        return path


class FPN(nn.Module):
    """Four stage maps -> one map at the first stage's resolution: 1 x 1 laterals to
    ``width`` channels, each coarser level upsampled and added, then a 3 x 3 conv."""

    def __init__(self, channels: Sequence[int], width: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](stages[-1])
        for lateral, f in zip(self.lateral[-2::-1], stages[-2::-1], strict=True):
            x = lateral(f) + F.interpolate(x, size=f.shape[-2:], mode="nearest")
        return self.smooth(x)


class BackboneSpatialEncoder(nn.Module):
    """A :class:`~polytask.encoders.protocol.SpatialEncoder`: the image column's FPN map
    is the shared representation (per-pixel tasks, MTAN)."""

    spatial = True
    trunk: nn.Sequential | None = None

    def __init__(
        self,
        in_channels: int,
        size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        options: ImageEncoderOptions,
    ):
        super().__init__()
        self.conv = BackboneFeatures(in_channels, mean, std, options)
        self.neck = FPN(self.conv.channels, options.decoder_width)
        self.out_features = options.decoder_width
        self.size = size
        #: the FPN map is at stride 4 of the images; resized images: straight to size
        self.strides = [2, 2] if self.conv.size is None else []
        self.pool = options.pool

    def forward(
        self, numeric: torch.Tensor, categorical: torch.Tensor, images: torch.Tensor
    ) -> torch.Tensor:
        return self.neck(self.conv.stage_outputs(images))


class BackboneVector(nn.Module):
    """An image column as one vector: the last stage pooled onto a grid, flattened."""

    def __init__(
        self,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        options: ImageEncoderOptions,
    ):
        super().__init__()
        self.conv = BackboneFeatures(in_channels, mean, std, options)
        self.pool = GridPool(options.pool)
        self.out_features = self.conv.channels[-1] * options.pool**2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(images))


def load_pretrained(net: nn.Module) -> list[Path]:
    """Load every named backbone's pretrained weights in ``net`` (at the start of
    training, not when a saved run is loaded); returns the files read."""
    found = [m.load_pretrained() for m in net.modules() if isinstance(m, BackboneFeatures)]
    return [p for p in found if p is not None]
