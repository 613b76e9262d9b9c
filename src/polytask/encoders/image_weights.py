"""Finding and loading a backbone's pretrained weights, offline only.

``pretrained: true`` looks in timm's cache (the Hugging Face hub cache, where
``timm.create_model(NAME, pretrained=True)`` puts ``model.safetensors``); ``pretrained:
PATH`` reads that safetensors file. Weights asked for and not found are an error that
says where to put them: a silent random start would look like a pretrained run.
Safetensors only, never a pickled checkpoint (``.pth``): loading weights runs no code.
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from polytask.encoders.resnet import BackboneSpec
from polytask.errors import PolytaskError

#: keys of a timm/torchvision checkpoint that polytask's heads replace
CLASSIFIER_PREFIXES = ("fc.", "head.", "classifier.")


def hub_cache() -> Path:
    """The Hugging Face hub cache timm downloads into (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home) / "hub"


def cached_weights(spec: BackboneSpec) -> Path | None:
    """``model.safetensors`` of the backbone's default timm weights, if cached."""
    repo = hub_cache() / f"models--{spec.hub_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.is_file():
        path = repo / "snapshots" / ref.read_text().strip() / "model.safetensors"
        if path.is_file():
            return path
    found = sorted(repo.glob("snapshots/*/model.safetensors"))
    return found[-1] if found else None


def weights_path(spec: BackboneSpec, pretrained: bool | str) -> Path | None:
    """The safetensors file to start from, None for a random start; an error when
    weights are asked for and are not here."""
    if pretrained is False:
        return None
    if isinstance(pretrained, str):
        path = Path(pretrained).expanduser()
        if path.suffix != ".safetensors":
            raise PolytaskError(
                f"model.image.pretrained: '{pretrained}' is not a .safetensors file; polytask "
                "loads weights only from safetensors (timm's model.safetensors)"
            )
        if not path.is_file():
            raise PolytaskError(f"model.image.pretrained: file '{path}' does not exist")
        return path
    cached = cached_weights(spec)
    if cached is None:
        where = hub_cache() / f"models--{spec.hub_id.replace('/', '--')}"
        raise PolytaskError(
            f"model.image.backbone '{spec.name}' asks for pretrained weights, but none are "
            f"here and nothing is downloaded: put {spec.hub_id}'s model.safetensors in "
            f"timm's cache ({where}/snapshots/COMMIT/, e.g. copied from a machine that ran "
            f"timm.create_model('{spec.name}', pretrained=True)), or give the file with "
            "model.image.pretrained: PATH, or set pretrained: false for a random start"
        )
    return cached


def load_weights(module: nn.Module, path: Path, name: str) -> None:
    """Load a timm/torchvision state dict (classifier dropped) into ``module``; every
    other key must match, so a file for another architecture fails loudly."""
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith(CLASSIFIER_PREFIXES)}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = (
            f"lacks {missing[0]}"
            if missing
            else f"has {unexpected[0]}, which {name} does not"
            if unexpected
            else f"gives {wrong[0]} shape {tuple(state[wrong[0]].shape)}, not "
            f"{tuple(own[wrong[0]].shape)}"
        )
        raise PolytaskError(
            f"weights '{path}' do not fit backbone '{name}': the file {what}; give the "
            f"weights of timm's '{name}'"
        )
    module.load_state_dict(state)
