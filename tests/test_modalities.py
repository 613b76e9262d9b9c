"""Text and image inputs end to end: train, score, predict, save and load, from the API
and the command line, with per-image and per-pixel tasks from one backbone."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import polytask
from polytask.errors import PolytaskError

FAST = {"progress": False, "patience": None, "seed": 0}


def squares(n: int, size: int = 16, seed: int = 0) -> pd.DataFrame:
    """Images with one bright square: its quadrant (multiclass), whether it is big
    (binary), its pixels (segmentation) and its side length (regression)."""
    rng = np.random.default_rng(seed)
    images, masks, quadrant, big, side = [], [], [], [], []
    for _ in range(n):
        s = int(rng.integers(3, 7))
        y, x = rng.integers(0, size - s, 2)
        img = rng.normal(0.1, 0.05, (size, size)).astype(np.float32)
        img[y : y + s, x : x + s] += 0.8
        m = np.zeros((size, size), dtype=np.int64)
        m[y : y + s, x : x + s] = 1
        cy, cx = y + s / 2, x + s / 2
        images.append(img)
        masks.append(m)
        quadrant.append(
            ("top" if cy < size / 2 else "bottom") + "-" + ("left" if cx < size / 2 else "right")
        )
        big.append(s >= 5)
        side.append(float(s))
    return pd.DataFrame(
        {"image": images, "quadrant": quadrant, "big": big, "mask": masks, "side": side}
    )


IMAGE_TASKS = ["quadrant:multiclass", "big:binary", "mask:segmentation", "side:regression"]
IMAGE_OPTS = {**FAST, "epochs": 12, "batch_size": 32, "lr": 3e-3}
SMALL_CNN = {"model": {"image": {"widths": [8, 16]}, "dropout": 0.0}}


@pytest.fixture(scope="module")
def image_model():
    train, test = squares(640, seed=0), squares(200, seed=1)
    model = polytask.fit(train, IMAGE_TASKS, test=test, config=SMALL_CNN, **IMAGE_OPTS)
    return model, test


def test_one_backbone_learns_class_mask_and_size(image_model):
    model, test = image_model
    m = model.evaluate(test)
    assert m["quadrant"]["accuracy"] > 0.8, m
    assert m["big"]["auroc"] > 0.85, m
    assert m["mask"]["miou"] > 0.6 and m["mask"]["pixel_accuracy"] > 0.9, m
    assert m["side"]["mae"] < 0.8, m  # sides are 3..6: guessing the mean gives ~1.0
    assert model.info["feature_types"] == {"image": "image"}


def test_dense_predictions_are_per_row_arrays_and_survive_save_load(image_model, tmp_path):
    model, test = image_model
    pred = model.predict(test.head(10))
    assert pred["mask"].iloc[0].shape == (16, 16)
    assert set(np.unique(np.stack(pred["mask"].to_list()))) <= {0, 1}
    model.save(tmp_path / "run")
    again = polytask.load(tmp_path / "run").predict(test.head(10))
    np.testing.assert_array_equal(
        np.stack(again["mask"].to_list()), np.stack(pred["mask"].to_list())
    )
    np.testing.assert_allclose(again["side"], pred["side"], rtol=1e-6)


def test_dense_tasks_need_the_image_as_the_only_feature():
    data = squares(64)
    data["extra"] = np.arange(64.0)
    with pytest.raises(PolytaskError, match="needs one image column as the only feature"):
        polytask.fit(data, ["mask:segmentation"], epochs=1, **{k: v for k, v in FAST.items()})


def test_images_from_files_through_the_command_line(tmp_path):
    from PIL import Image

    data = squares(120, seed=3)
    (tmp_path / "img").mkdir()
    rows = []
    for i, (img, m) in enumerate(zip(data["image"], data["mask"], strict=True)):
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(tmp_path / f"img/{i}.png")
        np.save(tmp_path / f"img/{i}_mask.npy", m)
        rows.append(
            {"picture": f"img/{i}.png", "mask": f"img/{i}_mask.npy", "side": data["side"][i]}
        )
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    run = [sys.executable, "-m", "polytask"]
    train = subprocess.run(
        [
            *run,
            "train",
            "--data",
            str(tmp_path / "data.csv"),
            "--task",
            "mask:segmentation",
            "--task",
            "side:regression",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path.parent,
    )
    assert train.returncode == 0, train.stderr
    predict = [*run, "predict", str(tmp_path / "run"), "--data", str(tmp_path / "data.csv")]
    predict += ["--output", str(tmp_path / "pred.csv")]
    pred = subprocess.run(predict, capture_output=True, text=True)
    assert pred.returncode == 0, pred.stderr
    table = pd.read_csv(tmp_path / "pred.csv")
    assert list(table.columns) == ["side", "side_lower", "side_upper"] and len(table) == 120
    arrays = np.load(tmp_path / "pred.npz")
    assert arrays["mask"].shape == (120, 16, 16)
    again = subprocess.run(predict, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr


POSITIVE = ["great", "excellent", "helped", "wonderful", "relief"]
NEGATIVE = ["awful", "terrible", "worse", "useless", "pain"]
TOPICS = {
    "sleep": ["insomnia", "night", "sleep"],
    "skin": ["acne", "skin", "rash"],
    "mood": ["anxiety", "depression", "mood"],
}
FILLER = ["the", "a", "this", "my", "was", "and", "it", "doctor", "after", "week"]


def reviews(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        sentiment = rng.choice(["positive", "negative"])
        topic = rng.choice(list(TOPICS))
        words = list(rng.choice(FILLER, 8))
        words += list(rng.choice(POSITIVE if sentiment == "positive" else NEGATIVE, 2))
        words += list(rng.choice(TOPICS[topic], 2))
        rng.shuffle(words)
        rows.append(
            {
                "review": " ".join(words),
                "sentiment": sentiment,
                "topic": topic,
                "age": float(rng.normal(50, 10)),
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_text_encoders_learn_sentiment_and_topic(encoder, tmp_path):
    train, test = reviews(600, 0), reviews(200, 1)
    cfg = {
        "features": {"text": ["review"]},
        "model": {
            "text": {
                "encoder": encoder,
                "hidden": 32,
                "embedding_dim": 32,
                "max_length": 24,
                "min_frequency": 1,
            },
            "hidden": [32],
        },
    }
    model = polytask.fit(
        train,
        ["sentiment:multiclass", "topic:multiclass"],
        config=cfg,
        epochs=8,
        batch_size=32,
        lr=3e-3,
        **FAST,
    )
    m = model.evaluate(test)
    assert m["sentiment"]["accuracy"] > 0.9, m
    assert m["topic"]["accuracy"] > 0.9, m
    model.save(tmp_path / "run")
    again = polytask.load(tmp_path / "run")
    pd.testing.assert_frame_equal(again.predict(test), model.predict(test))
    assert "age" in again.preprocessor.columns and "review" in again.preprocessor.columns


def test_bad_encoder_options_fail_before_training():
    with pytest.raises(PolytaskError, match=r"model\.text"):
        polytask.fit(reviews(20), ["sentiment:binary"], config={"model": {"text": {"encodr": "x"}}})


def test_mtan_attends_per_task_and_works_with_gradient_balancers():
    import torch

    train, test = squares(320, seed=4).drop(columns="big"), squares(120, seed=5)
    tasks = ["quadrant:multiclass", "mask:segmentation", "side:regression"]
    cfg = {**SMALL_CNN, "model": {**SMALL_CNN["model"], "architecture": "mtan"}}
    model = polytask.fit(train, tasks, test=test, config=cfg, **{**IMAGE_OPTS, "epochs": 8})
    m = model.evaluate(test)
    assert m["quadrant"]["accuracy"] > 0.6 and m["mask"]["miou"] > 0.5, m
    net = model.net
    # the split is exact: each head maps the shared representation to its task's output
    x = model.preprocessor.transform(test.head(8))
    with torch.no_grad():
        rep = net.representation(*x.inputs)
        for out, head in zip(net.heads_forward(rep), net.head_modules(), strict=True):
            torch.testing.assert_close(out, head(rep))
    for method, level in (("pcgrad", "parameters"), ("mgda", "representation")):
        bal = {"method": method, "jacobian": level}
        run = polytask.fit(
            train.head(96), tasks, config={**cfg, "balancing": bal}, **{**IMAGE_OPTS, "epochs": 1}
        )
        assert np.isfinite(run.history[-1]["train"]["loss"]["side"])
    with pytest.raises(PolytaskError, match="mtan"):
        data = reviews(30)
        polytask.fit(data, ["sentiment:multiclass"], architecture="mtan", epochs=1, **FAST)


@pytest.mark.parametrize(
    ("architecture", "data", "tasks", "config"),
    [
        ("hard", "images", ["quadrant:multiclass", "mask:segmentation", "side:regression"], {}),
        ("mtan", "images", ["quadrant:multiclass", "mask:segmentation", "side:regression"], {}),
        ("hard", "text", ["sentiment:multiclass", "topic:multiclass"], {"encoder": "lstm"}),
        ("mmoe", "text", ["sentiment:multiclass", "topic:multiclass"], {"encoder": "transformer"}),
    ],
)
def test_every_parameter_learns_and_the_model_round_trips(
    architecture, data, tasks, config, tmp_path
):

    if data == "images":
        frame = squares(64, seed=6).drop(columns="big")
        cfg = {"model": {"image": {"widths": [8, 16]}, "architecture": architecture}}
    else:
        frame = reviews(64)
        cfg = {
            "model": {
                "text": {
                    **config,
                    "hidden": 16,
                    "embedding_dim": 16,
                    "heads": 2,
                    "min_frequency": 1,
                },
                "architecture": architecture,
                "hidden": [16],
            }
        }
    model = polytask.fit(frame, tasks, config=cfg, epochs=1, **FAST)
    net = model.net.train()
    x = model.preprocessor.transform(frame.head(32))
    outs = net.forward_list(*x.inputs)
    assert [o.shape[0] for o in outs] == [32] * len(tasks)
    sum(o.float().square().mean() for o in outs).backward()
    # every parameter gets a gradient (padding embeddings aside, which stay 0 by design)
    silent = [
        n
        for n, p in net.named_parameters()
        if p.grad is None or (p.grad.abs().sum() == 0 and "embedding" not in n)
    ]
    assert not silent, silent
    model.save(tmp_path / "run")
    again = polytask.load(tmp_path / "run")
    before, after = model.predict_raw(frame.head(16)), again.predict_raw(frame.head(16))
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert again.evaluate(frame.head(16)).keys() == model.evaluate(frame.head(16)).keys()


def test_fortunes_corpus_loads_offline_when_installed():
    from polytask.datasets.fortunes import FORTUNES_DIR, GROUPS, load_fortunes

    if not (FORTUNES_DIR / "computers").is_file():
        pytest.skip("Debian's fortunes package is not installed (apt-get install fortunes)")
    df = load_fortunes()
    assert len(df) > 5000 and set(df["topic"]) == set(GROUPS)
    assert df["text"].str.len().min() >= 20 and df["group"].nunique() == 4
