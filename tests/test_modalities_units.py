"""Units of the text, image and dense-prediction building blocks, checked in isolation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polytask.encoders.cnn import ConvDecoder, ConvEncoder, ImageEncoderOptions
from polytask.encoders.text import (
    PAD_ID,
    LSTMTextEncoder,
    TextOptions,
    TransformerTextEncoder,
)
from polytask.errors import PolytaskError
from polytask.features.arrays import BASE_DIR, image_tensor_layout, load_arrays
from polytask.features.text import TextColumn
from polytask.tasks import make_task

TEXTS = pd.Series(
    ["the drug worked well", "terrible side effects", None, "worked well, no side effects"] * 5,
    name="review",
)


def test_tokenizer_round_trips_through_json_and_pads_with_zero():
    col = TextColumn.fit(
        "review", TEXTS, TextOptions(vocab_size=100, max_length=6, min_frequency=1)
    )
    ids = col.transform(TEXTS)
    assert ids.shape == (20, 6) and ids.dtype == np.int64
    assert (ids[2] == PAD_ID).all()  # a missing text is all padding
    assert (ids[0, :4] != PAD_ID).all() and (ids[0, 4:] == PAD_ID).all()
    again = TextColumn.from_dict(col.to_dict())
    np.testing.assert_array_equal(again.transform(TEXTS), ids)
    unseen = col.transform(pd.Series(["zzzz qqqq"]))
    assert (unseen[0, :2] == 1).all()  # unknown token id


@pytest.mark.parametrize("cls", [LSTMTextEncoder, TransformerTextEncoder])
def test_text_encoders_ignore_padding_and_handle_empty_texts(cls):
    torch.manual_seed(0)
    opts = TextOptions(hidden=16, embedding_dim=16, heads=2, max_length=12, dropout=0.0)
    enc = cls(50, opts).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0, 0], [5, 6, 7, 8, 9, 0], [0, 0, 0, 0, 0, 0]])
    out = enc(ids)
    assert out.shape == (3, enc.out_features) and torch.isfinite(out).all()
    # more padding after the real tokens changes nothing
    padded = torch.cat([ids, torch.zeros(3, 6, dtype=torch.long)], dim=1)
    torch.testing.assert_close(enc(padded), out)
    # gradients flow to the embeddings of real tokens only. The loss is a random projection
    # of the output: the plain sum of a LayerNorm-ed output has an analytically zero
    # gradient, so its sign would be rounding noise
    enc.train()
    projection = torch.randn(enc.out_features, generator=torch.Generator().manual_seed(1))
    (enc(ids[:1]) @ projection).sum().backward()
    grad = enc.embedding.weight.grad
    assert grad[PAD_ID].abs().sum() == 0
    for token in (5, 6, 7):  # well above rounding noise (float32 eps is ~1e-7)
        assert grad[token].abs().sum() > 1e-3


def test_conv_encoder_and_decoder_restore_resolution():
    opts = ImageEncoderOptions(widths=[8, 16, 32])
    enc = ConvEncoder(1, opts)
    x = torch.randn(4, 1, 28, 28)
    fmap = enc(x)
    assert fmap.shape == (4, 32, 7, 7)
    dec = ConvDecoder(enc.out_channels, 3, enc.strides, (28, 28))
    assert dec(fmap).shape == (4, 3, 28, 28)
    odd = ConvDecoder(enc.out_channels, 1, enc.strides, (27, 30))
    assert odd(fmap).shape == (4, 1, 27, 30)


def test_arrays_load_from_npy_and_png_relative_to_the_data_folder(tmp_path):
    from PIL import Image

    a = (np.arange(12, dtype=np.uint8).reshape(3, 4) * 20).astype(np.uint8)
    np.save(tmp_path / "a.npy", a)
    Image.fromarray(a).save(tmp_path / "b.png")
    col = pd.Series(["a.npy", "b.png", None], name="img")
    col.attrs[BASE_DIR] = str(tmp_path)
    arrays, present = load_arrays(col, tmp_path)
    assert arrays.shape == (3, 3, 4) and present.tolist() == [True, True, False]
    np.testing.assert_array_equal(arrays[0], a)
    np.testing.assert_array_equal(arrays[1], a)
    assert (arrays[2] == 0).all()
    t = image_tensor_layout(arrays)
    assert t.shape == (3, 1, 3, 4) and t.dtype == np.float32 and t.max() <= 1.0
    with pytest.raises(PolytaskError, match=r"row 0.*does not exist"):
        load_arrays(pd.Series(["nope.png"], name="img"), tmp_path)
    np.save(tmp_path / "c.npy", np.zeros((5, 5)))
    with pytest.raises(PolytaskError, match=r"row 1: shape \(5, 5\) differs"):
        load_arrays(pd.Series(["a.npy", "c.npy"], name="img"), tmp_path)


def _maps(n=6, h=4, w=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, k, size=(h, w)) for _ in range(n)]


def test_segmentation_metrics_match_a_hand_computation():
    task = make_task("seg", "segmentation", ["seg"], {})
    labels = pd.Series(_maps(), name="seg")
    task.fit(labels)
    assert task.output_size == 3
    y, m = task.encode(labels)
    assert y.shape == (6, 4, 5) and m.all()
    # predictions: class 0 everywhere -> IoU_0 = n0 / N, IoU_1 = IoU_2 = 0
    out = np.zeros((6, 3, 4, 5), dtype=np.float32)
    out[:, 0] = 1.0
    metrics = task.metrics(out, y.numpy(), m.numpy())
    n0 = int((y.numpy() == 0).sum())
    assert metrics["pixel_accuracy"] == pytest.approx(n0 / y.numel())
    assert metrics["miou"] == pytest.approx((n0 / y.numel() + 0 + 0) / 3)
    # perfect predictions
    perfect = np.eye(3, dtype=np.float32)[y.numpy()].transpose(0, 3, 1, 2)
    assert task.metrics(perfect, y.numpy(), m.numpy()) == {"miou": 1.0, "pixel_accuracy": 1.0}
    # the loss ignores unlabelled pixels and rows
    with_missing = pd.Series([*_maps(), None], name="seg")
    y2, m2 = task.encode(with_missing)
    assert not m2[-1].any() and task.n_labelled(m2.numpy()) == 6
    logits = torch.randn(7, 3, 4, 5)
    full = task.loss(logits[:6], y2[:6], None)
    torch.testing.assert_close(task.loss(logits, y2, m2), full)


def test_segmentation_rejects_bad_maps():
    task = make_task("seg", "segmentation", ["seg"], {"classes": 2})
    with pytest.raises(PolytaskError, match="class id 2 found but classes=2"):
        task.fit(pd.Series(_maps(k=3), name="seg"))
    task = make_task("seg", "segmentation", ["seg"], {})
    with pytest.raises(PolytaskError, match="non-integer"):
        task.fit(pd.Series([np.full((2, 2), 0.5)], name="seg"))


def test_dense_regression_standardises_and_reports_units():
    rng = np.random.default_rng(1)
    maps = [rng.normal(100, 10, size=(4, 4)) for _ in range(5)]
    maps[0][0, 0] = np.nan  # an unlabelled pixel
    task = make_task("depth", "dense_regression", ["depth"], {})
    labels = pd.Series(maps, name="depth")
    task.fit(labels)
    y, m = task.encode(labels)
    assert not m[0, 0, 0] and m.sum() == 5 * 16 - 1
    assert abs(float(y[m].mean())) < 1e-5
    # an output 1 std too high everywhere -> MAE = std in the label's units
    out = (y.numpy() + 1.0)[:, None]
    metrics = task.metrics(out, y.numpy(), m.numpy())
    assert metrics["mae"] == pytest.approx(task.std, rel=1e-5)
    decoded = task.decode(y.numpy()[:, None])["depth"]
    np.testing.assert_allclose(decoded[m.numpy()], np.stack(maps)[m.numpy()], rtol=1e-5)
    again = make_task("depth", "dense_regression", ["depth"], {})
    again.load_state(task.state())
    assert again.state() == task.state()
