"""polytask's ResNets against timm's: the same parameter names and shapes, the same
outputs with the same weights (so timm's model.safetensors loads into polytask unchanged).

timm is not a dependency: it imports torchvision at import time, and PyPI's torchvision
does not load with the CPU torch polytask pins. timm never needs torchvision to build a
ResNet, so this check installs timm alone and stubs torchvision out:

    pip install --no-deps --target /tmp/timm timm
    PYTHONPATH=src:/tmp/timm python benchmarks/timm_parity.py
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, ClassVar

import torch

from polytask.encoders.resnet import BACKBONES, ResNet


class _Meta(type(torch.nn.Module)):  # type: ignore[misc]
    def __getattr__(cls, name: str) -> str:  # enum members timm reads (InterpolationMode.X)
        if name.startswith("__"):
            raise AttributeError(name)
        return name


class _Any(torch.nn.Module, metaclass=_Meta):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()


class _Stub(types.ModuleType):
    __path__: ClassVar[list[str]] = []

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Any


class _StubTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.split(".")[0] != "torchvision":
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        return _Stub(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def main() -> None:
    sys.meta_path.insert(0, _StubTorchvision())
    timm = importlib.import_module("timm")
    for name, spec in BACKBONES.items():
        theirs = timm.create_model(name, pretrained=False, features_only=True).eval()
        ours = ResNet(spec).eval()
        a, b = theirs.state_dict(), ours.state_dict()
        assert set(a) == set(b), set(a) ^ set(b)
        assert all(a[k].shape == b[k].shape for k in a)
        ours.load_state_dict(a)
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            # timm's features_only also returns the stem (stride 2) first
            diff = max(
                float((u - v).abs().max())
                for u, v in zip(theirs(x)[1:], ours.stage_outputs(x), strict=True)
            )
        cfg = theirs.pretrained_cfg
        assert cfg["hf_hub_id"] == spec.hub_id and tuple(cfg["mean"]) == spec.mean
        assert cfg["input_size"] == (3, spec.input_size, spec.input_size)
        print(f"{name}: {len(a)} tensors, same names and shapes; largest output difference {diff}")


if __name__ == "__main__":
    main()
