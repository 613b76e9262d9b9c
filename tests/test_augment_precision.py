"""Training augmentation of image batches (flip, random resized crop; labels moved alike,
training batches only) and mixed precision (``training.precision``; the Jacobian and the
Gramian stay fp32). bf16 and fp16 autocast run on a CPU too, so no test needs a GPU."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import torch

import polytask
from polytask.balancing.base import GradientBalancer
from polytask.features.augment import Augment
from polytask.features.batches import Batch
from polytask.training.precision import Precision, resolve
from tests.test_modalities import FAST, SMALL_CNN, squares

TASKS = ["quadrant:multiclass", "mask:segmentation"]
CNN = {**SMALL_CNN, "features": {"include": ["image"]}}


def _batch(n: int = 64) -> Batch:
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(n, 12, 16, generator=g) > 0.5).long()
    images = torch.cat([masks[:, None].float(), torch.rand(n, 1, 12, 16, generator=g)], 1)
    labelled = torch.ones(n, 12, 16, dtype=torch.bool)
    labelled[:, :, :3] = False  # an unlabelled band moves with the pixels
    return Batch(
        torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.long), [masks], [labelled], (images,)
    )


def test_a_flip_moves_images_labels_and_masks_together() -> None:
    batch = _batch()
    out = Augment([0], [0], flip=True)(batch)
    image, mask, labelled = out.extra[0], out.targets[0], out.masks[0]
    assert labelled is not None
    flipped = torch.tensor(
        [torch.equal(a, b.flip(-1)) for a, b in zip(image, batch.extra[0], strict=True)]
    )
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(image, batch.extra[0], strict=True)])
    assert bool((flipped | kept).all()) and 15 < int(flipped.sum()) < 49
    assert torch.equal(mask, image[:, 0].long()) and mask.dtype == torch.long
    assert torch.equal(labelled[flipped, :, -3:], torch.zeros_like(labelled[flipped, :, -3:]))
    assert bool(labelled[~flipped, :, :3].logical_not().all())


def test_a_crop_keeps_label_values_and_their_pixels_in_step() -> None:
    batch = _batch()
    out = Augment([0], [0], flip=True, crop=0.3, seed=1)(batch)
    assert set(out.targets[0].unique().tolist()) <= {0, 1}
    assert not torch.equal(out.extra[0], batch.extra[0])
    # the image's first channel is the mask: nearest labels agree with bilinear pixels
    agree = ((out.extra[0][:, 0] > 0.5).long() == out.targets[0]).float().mean()
    assert float(agree) > 0.85
    again = Augment([0], [0], flip=True, crop=0.3, seed=1)(batch)
    assert torch.equal(again.extra[0], out.extra[0])  # seeded


def test_augmentation_runs_on_training_batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = Augment.__call__

    def spy(self: Augment, batch: Batch) -> Batch:
        calls.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(Augment, "__call__", spy)
    cfg = {**CNN, "model": {"image": {"widths": [8, 16], "flip": True, "crop": 0.5}}}
    model = polytask.fit(squares(80), TASKS, config=cfg, epochs=2, batch_size=32, **FAST)
    train_rows = model.info["rows"]["train"]
    assert sum(calls) == 2 * train_rows  # two epochs of training rows, no evaluation row
    with pytest.raises(polytask.PolytaskError, match="augment image columns"):
        polytask.fit(
            pd.DataFrame({"x": [1.0, 2, 3, 4] * 5, "y": [0.0, 1, 0, 1] * 5}),
            ["y:regression"],
            config={"model": {"image": {"flip": True}}},
            epochs=1,
            **FAST,
        )


def test_precision_resolves_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve("auto", cpu) is None and resolve("fp32", cuda) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve("auto", cuda) == torch.float16
    assert Precision("fp16", cpu).scaler is not None
    assert Precision("fp16", cpu, gradient_level=True).dtype is None  # see precision.py
    assert Precision("bf16", cpu, gradient_level=True).dtype == torch.bfloat16


def _conv_dtypes(model_cfg: dict[str, Any], **opts: Any) -> tuple[set, set]:
    """(dtypes of the first conv's output while training, of the task Jacobian's Gramian)."""
    seen: set = set()
    grams: set = set()
    real = GradientBalancer.update

    def update(self, jac, *args):  # type: ignore[no-untyped-def]
        grams.add(jac.gram().dtype)
        return real(self, jac, *args)

    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: seen.add(o.dtype) if isinstance(m, torch.nn.Conv2d) and m.training else None
    )
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(GradientBalancer, "update", update)
            model = polytask.fit(
                squares(48), TASKS, config=model_cfg, epochs=1, batch_size=16, **FAST, **opts
            )
    finally:
        handle.remove()
    assert all(
        v is None or v == v for m in model.metrics["train"].values() for v in m.values()
    )  # finite metrics: no NaN
    return seen, grams


@pytest.mark.parametrize(
    "precision, balancing, jacobian",
    [
        ("bf16", "ew", "parameters"),
        ("fp16", "ew", "parameters"),
        ("bf16", "upgrad", "parameters"),
        ("bf16", "mgda", "representation"),
    ],
)
def test_mixed_precision_on_every_step_kind(precision: str, balancing: str, jacobian: str) -> None:
    cfg = {**CNN, "balancing": {"method": balancing, "jacobian": jacobian}}
    convs, grams = _conv_dtypes(cfg, precision=precision)
    want = torch.bfloat16 if precision == "bf16" else torch.float16
    assert want in convs  # the forward ran under autocast
    assert grams <= {torch.float32}  # the Gramian (and the Jacobian) are fp32
    if balancing != "ew":
        assert grams == {torch.float32}


def test_fp32_turns_it_off() -> None:
    convs, _ = _conv_dtypes(CNN, precision="fp32")
    assert convs == {torch.float32}
