"""Convolutional encoder for images and the decoder that dense heads use.

``backbone: cnn``: a small conv stack (configurable width, depth and stride) that trains
from scratch in minutes on a CPU at the image sizes polytask's examples use. The other
backbones (ResNets, optionally pretrained) live in :mod:`polytask.encoders.backbone`;
``ImageEncoderOptions`` holds both sets of options.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator
from torch import nn

from polytask.encoders.mlp import ACTIVATIONS
from polytask.encoders.resnet import BACKBONES


class ImageEncoderOptions(BaseModel):
    """``model.image`` in the config."""

    model_config = ConfigDict(extra="forbid")

    #: output channels of each stage; each stage after the first halves the resolution
    widths: list[PositiveInt] = Field(default_factory=lambda: [32, 64, 128])
    #: convolutions per stage
    depth: int = Field(1, ge=1, le=8)
    #: stride of the first convolution of every stage but the first
    stride: int = Field(2, ge=1, le=4)
    kernel_size: int = Field(3, ge=1, le=9)
    norm: str = Field("batch", pattern="^(batch|none)$")
    #: per-image tasks read the feature map averaged onto a pool x pool grid and
    #: flattened; 1 is a global mean (position-blind), more keeps where things are
    pool: int = Field(4, ge=1, le=16)
    #: ``cnn`` (the stack above, from scratch) or a ResNet with timm's name and weights
    backbone: str = "cnn"
    #: a named backbone's start: true = timm's cached weights, PATH = a safetensors file,
    #: false = random; weights asked for and not found are an error (ignored by cnn)
    pretrained: bool | str = True
    #: resize images to this square size inside the model; None: the backbone's own
    #: input size (224) when it starts from pretrained weights, else the images' size
    input_size: PositiveInt | None = None
    #: channels of a named backbone's FPN decoder, which per-pixel tasks read
    decoder_width: PositiveInt = 64
    #: training augmentation (off at evaluation): random horizontal flips
    flip: bool = False
    #: training augmentation: random resized crops keeping at least this share of the
    #: image's area (with per-pixel labels cropped alike); None: no crop
    crop: float | None = Field(None, gt=0, le=1)

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        if name != "cnn" and name not in BACKBONES:
            known = ", ".join(["cnn", *BACKBONES])
            raise ValueError(
                f"unknown backbone '{name}'; known: {known} (polytask's own ResNets with "
                "timm's parameter names: timm itself needs torchvision, which does not load "
                "with CPU torch)"
            )
        return name

    @model_validator(mode="after")
    def _cnn_has_no_weights(self) -> ImageEncoderOptions:
        if self.backbone == "cnn" and isinstance(self.pretrained, str):
            raise ValueError("backbone 'cnn' trains from scratch and takes no weights file")
        return self

    @property
    def weights_wanted(self) -> bool:
        return self.backbone != "cnn" and self.pretrained is not False


def _conv_block(
    c_in: int, c_out: int, kernel: int, stride: int, activation: str, norm: str
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=norm == "none")
    ]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(ACTIVATIONS[activation]())
    return layers


class ConvEncoder(nn.Module):
    """(N, C, H, W) images -> (N, widths[-1], H / s, W / s) feature map, as one stage
    per width (an architecture such as MTAN reads every stage's output)."""

    def __init__(self, in_channels: int, options: ImageEncoderOptions, activation: str = "relu"):
        super().__init__()
        stages: list[nn.Module] = []
        c = in_channels
        for i, width in enumerate(options.widths):
            layers: list[nn.Module] = []
            for j in range(options.depth):
                stride = options.stride if (i > 0 and j == 0) else 1
                layers += _conv_block(
                    c, width, options.kernel_size, stride, activation, options.norm
                )
                c = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.widths = list(options.widths)
        self.in_channels = in_channels
        self.out_channels = c
        #: resolution steps the decoder has to undo, one per strided stage
        self.strides = [options.stride] * (len(options.widths) - 1) if options.stride > 1 else []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for stage in self.stages:
            x = stage(x)
        return x

    def stage_outputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        outs, x = [], images
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class ImageVector(nn.Module):
    """An image column as one vector per image: the conv stack, then a pooled grid."""

    def __init__(self, in_channels: int, options: ImageEncoderOptions, activation: str = "relu"):
        super().__init__()
        self.conv = ConvEncoder(in_channels, options, activation)
        self.pool = GridPool(options.pool)
        self.out_features = self.conv.out_channels * options.pool**2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(images))


class SpatialImageEncoder(nn.Module):
    """The encoder of models with per-pixel tasks: one image column -> its feature map
    (N, C, h, w), which stays the shared representation so dense heads can decode it.
    Takes the network's positional inputs and ignores the (empty) table inputs."""

    spatial = True
    #: no MLP trunk: the representation is the conv stack's map
    trunk: nn.Sequential | None = None

    def __init__(
        self,
        in_channels: int,
        size: tuple[int, int],
        options: ImageEncoderOptions,
        activation: str = "relu",
    ):
        super().__init__()
        self.conv = ConvEncoder(in_channels, options, activation)
        self.out_features = self.conv.out_channels
        self.strides = self.conv.strides
        self.size = size
        #: what a per-image head reads: the map pooled onto this grid
        self.pool = options.pool

    def forward(
        self, numeric: torch.Tensor, categorical: torch.Tensor, images: torch.Tensor
    ) -> torch.Tensor:
        return self.conv(images)


class GridPool(nn.Module):
    """(N, C, h, w) -> (N, C * size²): the map averaged onto a size x size grid, flattened
    (size 1 is the global mean)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size == 1:
            return x.mean(dim=(2, 3))
        return F.adaptive_avg_pool2d(x, self.size).flatten(1)


class ConvDecoder(nn.Module):
    """A dense head: (N, C, h, w) feature map -> (N, outputs, H, W) at the input size.

    Each step doubles (or multiplies by the encoder's stride) the resolution with a
    bilinear upsampling and a 3 x 3 convolution, halving the channels; a last 1 x 1
    convolution gives the outputs, resized exactly to the input's H x W."""

    def __init__(
        self,
        in_channels: int,
        outputs: int,
        strides: list[int],
        size: tuple[int, int],
        activation: str = "relu",
    ):
        super().__init__()
        steps: list[nn.Module] = []
        c = in_channels
        for stride in strides:
            out = max(c // 2, 16)
            steps.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=stride, mode="bilinear", align_corners=False),
                    *_conv_block(c, out, 3, 1, activation, "batch"),
                )
            )
            c = out
        self.steps = nn.Sequential(*steps)
        self.out = nn.Conv2d(c, outputs, 1)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out(self.steps(x))
        if tuple(y.shape[-2:]) != self.size:
            y = F.interpolate(y, size=self.size, mode="bilinear", align_corners=False)
        return y
