"""Multi-Fashion: two Fashion-MNIST items overlaid in one image, four tasks from one input.

Built like MultiMNIST (Sener and Koltun 2018): on a 36 x 36 canvas one item sits at the
top left and another at the bottom right, the second drawn over the first where they
overlap. Tasks:

- ``left``, ``right``: the class of each item (multiclass, 10 classes each);
- ``mask``: the pixels of the right-hand item (segmentation: 0 background, 1 item);
- ``left_visible``: the share of the left item's pixels that stay visible (regression).

Fashion-MNIST (Xiao et al. 2017, MIT licence) comes from Debian's package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); nothing is downloaded.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from polytask.errors import PolytaskError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
CANVAS = 36
#: an item's pixel counts as "on" above this intensity (0-255)
INK = 40


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format, optionally gzipped) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise PolytaskError(f"'{path}' is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion(split: str, folder: Path = FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images, labels = (
        folder / f"{prefix}-images-idx3-ubyte.gz",
        folder / f"{prefix}-labels-idx1-ubyte.gz",
    )
    if not images.is_file():
        raise PolytaskError(
            f"Fashion-MNIST is not at '{folder}'; install it with "
            "'apt-get install dataset-fashion-mnist' (Debian)"
        )
    return read_idx(images), read_idx(labels)


def overlay(images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` two-item images drawn from ``images``; one array per column."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(images), n)
    b = rng.integers(0, len(images), n)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    size = images.shape[1]
    off = CANVAS - size
    # jitter each item by up to 2 pixels so positions are not fixed
    ja = rng.integers(0, 3, size=(n, 2))
    jb = rng.integers(0, 3, size=(n, 2))
    mask = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    visible = np.zeros(n, dtype=np.float32)
    for i in range(n):
        ya, xa = ja[i]
        yb, xb = off - jb[i, 0], off - jb[i, 1]
        left = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
        left[ya : ya + size, xa : xa + size] = images[a[i]]
        right = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
        right[yb : yb + size, xb : xb + size] = images[b[i]]
        on_right = right > INK
        canvas[i] = np.where(on_right, right, left)
        mask[i] = on_right
        on_left = left > INK
        visible[i] = (on_left & ~on_right).sum() / max(int(on_left.sum()), 1)
    return {
        "image": canvas,
        "left": np.array(CLASSES)[labels[a]],
        "right": np.array(CLASSES)[labels[b]],
        "mask": mask,
        "left_visible": visible,
    }


def build(
    out_dir: str | Path, n_train: int = 10000, n_test: int = 2000, seed: int = 0
) -> list[Path]:
    """Write ``train.npz`` (from Fashion-MNIST's training images) and ``test.npz`` (from
    its test images) to ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = load_fashion(split)
        path = out / f"{split}.npz"
        arrays: dict[str, Any] = overlay(images, labels, n, s)
        np.savez_compressed(path, **arrays)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m polytask.datasets.multi_fashion",
        description="Build the Multi-Fashion benchmark (train.npz, test.npz) from Debian's "
        "dataset-fashion-mnist package.",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--train", type=int, default=10000, help="training images (default 10000)")
    p.add_argument("--test", type=int, default=2000, help="test images (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        for path in build(args.out, args.train, args.test, args.seed):
            print(path)
    except PolytaskError as err:
        print(f"error: {err}", file=__import__("sys").stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
