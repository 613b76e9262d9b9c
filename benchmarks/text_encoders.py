"""Text encoders on a real corpus: Debian's fortunes (about 7,000 texts, 12 topics in 4
groups; ``polytask.datasets.fortunes``), two classification tasks from one encoder.

For each encoder (``lstm``, ``transformer``, and ``sentence`` when
``polytask[sentence]`` is installed) one multi-task model predicts ``topic`` and
``group``; next to them, in the same run and on the same split, TF-IDF + logistic
regression per task (scikit-learn), the obvious non-neural alternative. Test accuracy
and training time (seconds, this machine).

    python benchmarks/text_encoders.py [--epochs 8] [--encoders lstm,transformer,sentence]
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

import polytask
from polytask.datasets.fortunes import load_fortunes
from polytask.features.splits import split_frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--encoders", default="lstm,transformer,sentence")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    df = load_fortunes()
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
        if encoder == "sentence" and importlib.util.find_spec("sentence_transformers") is None:
            print("sentence: skipped (pip install 'polytask[sentence]')")
            continue
        text = {"encoder": encoder, "max_length": 64, "hidden": 128, "embedding_dim": 128}
        if encoder == "transformer":
            text.update(layers=2, heads=4)
        cfg = {"features": {"text": ["text"]}, "model": {"text": text, "hidden": [128]}}
        t0 = time.perf_counter()
        model = polytask.fit(
            train,
            ["topic:multiclass", "group:multiclass"],
            config=cfg,
            validation=val,
            test=test,
            epochs=args.epochs,
            batch_size=64,
            lr=2e-3,
            patience=3,
            seed=args.seed,
            progress=False,
        )
        seconds = time.perf_counter() - t0
        m = model.metrics["test"]
        rows.append(
            (
                f"polytask, {encoder} encoder (one model, two heads)",
                m["topic"]["accuracy"],
                m["group"]["accuracy"],
                seconds,
            )
        )
    print("\n| model | topic accuracy (12) | group accuracy (4) | seconds |")
    print("|---|---:|---:|---:|")
    for name, a, b, s in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} | {s:.0f} |")


if __name__ == "__main__":
    main()
