"""The text inputs of an exported graph: one int64 token-id input per text column (a
pretrained encoder's), and its tokenizer as a file beside the graph (docs/onnx.md)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from polytask.errors import PolytaskError
from polytask.features.preprocess import Preprocessor


def text_input_names(pre: Preprocessor) -> list[str]:
    """One graph input per text column: ``text_`` and the column name with characters
    other than letters, digits and ``_`` replaced by ``_`` (made unique)."""
    names: list[str] = []
    for col in pre.text:
        base = "text_" + re.sub(r"\W", "_", col.name, flags=re.ASCII)
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def random_ids(col: Any, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Token ids of random texts of random lengths (at least 2 tokens), padded."""
    length = min(col.options.max_length, 24)
    ids = np.full((rows, length), col.pad_id, dtype=np.int64)
    vocab = col.vocab_size
    for i, n in enumerate(rng.integers(2, length + 1, rows)):
        ids[i, :n] = rng.integers(0, vocab, n)
        ids[i, :n][ids[i, :n] == col.pad_id] = (col.pad_id + 1) % vocab
    return ids


def tokenizer_files(pre: Preprocessor) -> dict[str, str]:
    """The text columns' tokenizers as files beside the graph: ``tokenizer.json`` (then
    ``tokenizer-2.json``, ...), file name -> Hugging Face tokenizers JSON."""
    files: dict[str, str] = {}
    for i, col in enumerate(pre.text):
        files["tokenizer.json" if i == 0 else f"tokenizer-{i + 1}.json"] = col.tokenizer.to_str()
    return files


def check_text(pre: Preprocessor) -> None:
    """Text columns export with a pretrained encoder (a transformer graph); the LSTM's
    packed sequences do not."""
    for col in pre.text:
        if not col.pretrained:
            raise PolytaskError(
                f"cannot export the text feature '{col.name}' with encoder "
                f"'{col.options.encoder}': only encoder 'pretrained' exports; use polytask "
                "predict or polytask serve"
            )


def text_spec(pre: Preprocessor) -> list[dict[str, Any]]:
    """The preprocessing file's ``text.features``: per text column its graph input, its
    tokenizer's file, the tokens kept and the padding id."""
    return [
        {
            "name": col.name,
            "input": name,
            "tokenizer": file,
            "max_length": col.options.max_length,
            "pad_id": col.pad_id,
        }
        for name, col, file in zip(
            text_input_names(pre), pre.text, tokenizer_files(pre), strict=True
        )
    ]
