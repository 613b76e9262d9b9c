"""Named image backbones (``model.image.backbone: resnet18``): timm's parameter names,
weights from a local safetensors file or timm's cache (never a silent random start),
every balancing method at both Jacobian levels, augmentation, mixed precision, and a
trained run that saves, loads and predicts like one with the from-scratch CNN."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

import polytask
from polytask.api import build_config, train_run
from polytask.balancing import METHODS, get
from polytask.balancing.base import GradientBalancer
from polytask.encoders.backbone import BackboneFeatures, BackboneSpatialEncoder
from polytask.encoders.cnn import ImageEncoderOptions
from polytask.encoders.resnet import BACKBONES, ResNet
from polytask.errors import PolytaskError
from polytask.features.batches import Batch
from polytask.training import Callback
from polytask.training.steps import make_step
from tests.conftest import assert_user_error, call_cli
from tests.test_modalities import FAST, squares

TASKS = ["quadrant:multiclass", "mask:segmentation", "side:regression"]


def resnet_cfg(**image: object) -> dict:
    return {
        "model": {"image": {"backbone": "resnet18", "pretrained": False, **image}},
        "features": {"include": ["image"]},
    }


@pytest.fixture(scope="module")
def tiny() -> polytask.MultiTaskModel:
    """resnet18 on 32 x 32 squares, one epoch: a net to take steps with."""
    return polytask.fit(
        squares(48, size=32), TASKS, config=resnet_cfg(), epochs=1, batch_size=16, **FAST
    )


def test_resnets_have_timms_parameter_names_and_counts() -> None:
    """The counts are timm's ``features_only`` models' (benchmarks/timm_parity.py checks
    names, shapes and outputs against timm itself)."""
    nets = {n: ResNet(s) for n, s in BACKBONES.items()}
    counts = {n: sum(p.numel() for p in net.parameters()) for n, net in nets.items()}
    assert counts == {"resnet18": 11_176_512, "resnet34": 21_284_672, "resnet50": 23_508_032}
    keys = list(nets["resnet50"].state_dict())
    assert keys[:2] == ["conv1.weight", "bn1.weight"]
    assert "layer2.0.downsample.0.weight" in keys and "layer4.2.bn3.running_var" in keys


def _saved_backbone(path: Path, name: str = "resnet18") -> dict[str, torch.Tensor]:
    """A timm-style file: the backbone's tensors plus the ImageNet classifier."""
    torch.manual_seed(123)
    state = {k: v.clone() for k, v in ResNet(BACKBONES[name]).state_dict().items()}
    state["layer1.0.bn1.running_mean"] += 0.5  # buffers load too, not just parameters
    width = 2048 if name == "resnet50" else 512
    save_file({**state, "fc.weight": torch.zeros(1000, width), "fc.bias": torch.zeros(1000)}, path)
    return state


def test_weights_from_a_safetensors_file_reproduce_its_outputs(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    state = _saved_backbone(path)
    reference = ResNet(BACKBONES["resnet18"]).eval()
    reference.load_state_dict(state)
    options = ImageEncoderOptions(backbone="resnet18", pretrained=str(path), input_size=32)
    features = BackboneFeatures(3, [0.0] * 3, [1.0] * 3, options).eval()
    before = features.body.conv1.weight.clone()
    assert features.load_pretrained() == path
    assert not torch.equal(before, features.body.conv1.weight)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = reference.stage_outputs(
            (x - torch.tensor(BACKBONES["resnet18"].mean).view(1, 3, 1, 1))
            / torch.tensor(BACKBONES["resnet18"].std).view(1, 3, 1, 1)
        )
        got = features.stage_outputs(x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


class FirstWeights(Callback):
    def on_train_begin(self, trainer) -> None:  # type: ignore[no-untyped-def]
        self.conv1 = trainer.net.encoder.conv.body.conv1.weight.detach().clone()


def test_training_starts_from_the_file_and_the_run_needs_it_no_more(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    state = _saved_backbone(path)
    seen = FirstWeights()
    df = squares(16, size=32)
    cfg = build_config(resnet_cfg(pretrained=str(path)), TASKS, epochs=1, batch_size=16, **FAST)
    model = train_run(cfg, df, callbacks=[seen])
    assert torch.equal(seen.conv1, state["conv1.weight"])
    path.unlink()  # a saved run carries its fine-tuned weights and never reads the file
    model.save(tmp_path / "run")
    loaded = polytask.load(tmp_path / "run")
    want, got = model.predict(df), loaded.predict(df)
    pd.testing.assert_frame_equal(got, want)
    assert loaded.evaluate(df)["quadrant"] == model.evaluate(df)["quadrant"]


def test_timms_cache_is_found_and_missing_weights_are_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    df = squares(16, size=32)
    with pytest.raises(PolytaskError, match=r"put timm/resnet18.a1_in1k's model.safetensors"):
        polytask.fit(df, TASKS, config=resnet_cfg(pretrained=True), epochs=1, **FAST)
    data = tmp_path / "d.npz"
    np.savez(data, image=np.stack(df["image"]), quadrant=df["quadrant"].to_numpy())
    cli = call_cli(
        [
            "train",
            "--data",
            data,
            "--task",
            "quadrant:multiclass",
            "--out",
            tmp_path / "r",
            "--config",
            _yaml(tmp_path, "backbone: resnet18"),
        ]
    )
    assert_user_error(cli, "pretrained weights", "pretrained: false for a random start")
    snap = tmp_path / "hub/models--timm--resnet18.a1_in1k/snapshots/abc"
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs/main").write_text("abc")
    state = _saved_backbone(snap / "model.safetensors")
    seen = FirstWeights()
    cfg = build_config(resnet_cfg(pretrained=True, input_size=32), TASKS, epochs=1, **FAST)
    train_run(cfg, df, callbacks=[seen])
    assert torch.equal(seen.conv1, state["conv1.weight"])


def _yaml(folder: Path, image: str) -> Path:
    path = folder / "c.yaml"
    path.write_text(f"features: {{image: [image]}}\nmodel: {{image: {{{image}}}}}\n")
    return path


def test_weights_of_another_backbone_or_a_pickle_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "r50.safetensors"
    _saved_backbone(other, "resnet50")
    with pytest.raises(PolytaskError, match="do not fit backbone 'resnet18'"):
        BackboneFeatures(
            1, [0.0], [1.0], ImageEncoderOptions(backbone="resnet18", pretrained=str(other))
        ).load_pretrained()
    with pytest.raises(PolytaskError, match="only from safetensors"):
        BackboneFeatures(
            1,
            [0.0],
            [1.0],
            ImageEncoderOptions(backbone="resnet18", pretrained=str(tmp_path / "w.pth")),
        ).load_pretrained()
    with pytest.raises(
        ValueError, match=r"unknown backbone 'vit_tiny'.*timm itself needs torchvision"
    ):
        ImageEncoderOptions(backbone="vit_tiny")


def test_input_size_and_normalisation_are_the_backbones() -> None:
    pretrained = ImageEncoderOptions(backbone="resnet18", pretrained="x.safetensors")
    grey = BackboneFeatures(1, [0.2], [0.1], pretrained)
    assert grey.size == 224  # timm's pretrained_cfg input size, when starting from weights
    x = torch.full((1, 1, 36, 36), 3.0)  # standardised: raw value 0.2 + 3 * 0.1 = 0.5
    y = grey.backbone_input(x)
    assert y.shape == (1, 3, 224, 224)
    want = (0.5 - torch.tensor(BACKBONES["resnet18"].mean)) / torch.tensor(
        BACKBONES["resnet18"].std
    )
    torch.testing.assert_close(y[0, :, 100, 100], want)
    assert (
        BackboneFeatures(
            3, [0.5] * 3, [0.2] * 3, ImageEncoderOptions(backbone="resnet18", pretrained=False)
        ).size
        is None
    )


def _batch(model: polytask.MultiTaskModel, df: pd.DataFrame) -> Batch:
    feats = model.preprocessor.transform(df)
    encoded = [t.encode(t.labels_of(df)) for t in model.tasks]
    return Batch(
        feats.numeric,
        feats.categorical,
        [e[0] for e in encoded],
        [e[1] for e in encoded],
        tuple(feats.extra.values()),
    )


def _gradient_cases() -> list[tuple[str, str]]:
    cases = []
    for name, cls in METHODS.items():
        levels = (
            ["parameters", "representation"]
            if issubclass(cls, GradientBalancer)
            else ["parameters"]
        )
        cases += [(name, level) for level in levels]
    return cases


def test_every_balancer_at_both_levels_steps_the_backbone(tiny: polytask.MultiTaskModel) -> None:
    """One step per method and level: finite losses, every backbone and FPN tensor gets
    a finite gradient, and the update lowers nothing to NaN."""
    df = squares(4, size=32, seed=3)
    batch = _batch(tiny, df)
    net = copy.deepcopy(tiny.net).train()
    assert isinstance(net.encoder, BackboneSpatialEncoder)
    failures = []
    for name, level in _gradient_cases():
        for p in net.parameters():
            p.grad = None
        opts = {"weights": {t.name: 1.0 for t in tiny.tasks}} if name == "weights" else {}
        balancer = get(name, **opts)
        balancer.setup([t.name for t in tiny.tasks])
        step = make_step(net, tiny.tasks, balancer, level)
        losses = step(batch)
        trunk = net.encoder.conv.body.conv1.weight.grad
        neck = net.encoder.neck.lateral[0].weight.grad
        ok = all(torch.isfinite(x).all() for x in losses) and trunk is not None and neck is not None
        ok = ok and bool(torch.isfinite(trunk).all()) and float(trunk.abs().sum()) > 0  # type: ignore[union-attr]
        if not ok:
            failures.append(f"{name}@{level}")
    assert not failures


def test_a_saved_backbone_run_serves_what_predict_answers(
    tiny: polytask.MultiTaskModel, tmp_path: Path
) -> None:
    """Images arrive over HTTP as nested lists; a per-pixel task answers with its map."""
    from fastapi.testclient import TestClient

    from polytask.serving.app import create_app

    tiny.save(tmp_path / "run")
    df = squares(4, size=32, seed=5)
    df.loc[3, "image"] = None  # a missing image: the average image, as predict has it
    want = tiny.predict(df)
    body = {"records": [{"image": None if v is None else v.tolist()} for v in df["image"]]}
    with TestClient(create_app(tmp_path / "run")) as client:
        got = client.post("/predict", json=body)
        bad = client.post("/predict", json={"records": [{"image": [[0.5] * 31] * 32}]})
    assert got.status_code == 200, got.text
    rows = got.json()["predictions"]
    assert [r["quadrant"] for r in rows] == list(want["quadrant"])
    for r, m in zip(rows, want["mask"], strict=True):
        np.testing.assert_array_equal(np.array(r["mask"]), m)
    np.testing.assert_allclose([r["side"] for r in rows], want["side"], rtol=1e-6)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "records", 0, "image"]
    assert "shape 32 x 32" in bad.json()["detail"][0]["msg"]


def test_a_backbone_run_exports_to_onnx_matching_torch(
    tiny: polytask.MultiTaskModel, tmp_path: Path
) -> None:
    """The graph takes the standardised images; resizing and the backbone's own
    normalisation are inside it. Raw outputs within 1e-4 of PyTorch's on new images."""
    from polytask.serving.onnx_decode import OnnxPredictor
    from polytask.serving.onnx_export import export_onnx

    result = export_onnx(tiny, tmp_path / "m.onnx")
    assert result.max_error is not None and result.max_error <= 1e-4
    df = squares(6, size=32, seed=7)
    predictor = OnnxPredictor(result.graph)
    raw = predictor.raw([{"image": v} for v in df["image"]])
    with torch.inference_mode():
        want = tiny.net.eval().forward_list(*tiny.preprocessor.transform(df).inputs)
    for name, w in zip(predictor.outputs, want, strict=True):
        np.testing.assert_allclose(raw[name], w.numpy(), atol=1e-4, rtol=1e-4)
    decoded, expected = predictor.predict([{"image": v} for v in df["image"]]), tiny.predict(df)
    assert list(decoded["quadrant"]) == list(expected["quadrant"])
    np.testing.assert_array_equal(decoded["mask"], np.stack(expected["mask"]))
