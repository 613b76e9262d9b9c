"""ResNet-18/34/50 (He et al. 2016) with timm's (and torchvision's) parameter names.

Why polytask's own and not ``timm.create_model``: timm imports torchvision at import time,
and PyPI's torchvision does not load with the CPU build of torch this project pins (its
compiled ops need the CUDA build, which a matching torchvision would pull, several GB).
The modules here carry the same names as timm's ``resnet18``/``resnet34``/``resnet50``
(``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``layer2.0.downsample.0``), so a timm or
torchvision ``model.safetensors`` loads into them unchanged (its ``fc`` classifier is
dropped: polytask's heads replace it). ``stage_outputs`` gives ``features_only``'s four
stages (strides 4, 8, 16, 32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: ImageNet statistics the pretrained weights were trained with (timm's IMAGENET_DEFAULT_*)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """What timm's ``pretrained_cfg`` says about a backbone, and how to build it."""

    name: str
    block: str
    layers: tuple[int, int, int, int]
    #: the Hugging Face repository timm loads the default pretrained weights from
    hub_id: str
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", "basic", (2, 2, 2, 2), "timm/resnet18.a1_in1k"),
    "resnet34": BackboneSpec("resnet34", "basic", (3, 4, 6, 3), "timm/resnet34.a1_in1k"),
    "resnet50": BackboneSpec("resnet50", "bottleneck", (3, 4, 6, 3), "timm/resnet50.a1_in1k"),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(y)) + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.act2(self.bn2(self.conv2(y)))
        return self.act3(self.bn3(self.conv3(y)) + shortcut)


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
    )


class ResNet(nn.Module):
    """The feature extractor (no classifier): 3-channel images -> four stage maps."""

    def __init__(self, spec: BackboneSpec):
        super().__init__()
        block = BasicBlock if spec.block == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c = 64
        stages: list[nn.Sequential] = []
        for i, (n, width) in enumerate(zip(spec.layers, (64, 128, 256, 512), strict=True)):
            blocks: list[nn.Module] = []
            for j in range(n):
                blocks.append(block(c, width, 2 if (i > 0 and j == 0) else 1))
                c = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        #: channels of each stage's output (timm's ``feature_info.channels()``)
        self.channels = [w * block.expansion for w in (64, 128, 256, 512)]
        self.reductions = [4, 8, 16, 32]
        for m in self.modules():  # timm's and torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        outs = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            outs.append(x)
        return outs
