"""A tiny pretrained-style text model for tests: a BertModel from a small config (random
weights) saved as a model folder beside a WordPiece tokenizer trained on the texts, with
the [CLS] ... [SEP] template of a BERT tokenizer (what all-MiniLM-L6-v2 ships)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

WORDS = [
    "good",
    "great",
    "fine",
    "lovely",
    "happy",
    "bad",
    "awful",
    "poor",
    "sad",
    "angry",
    "the",
    "a",
    "movie",
    "film",
    "food",
    "service",
    "plot",
    "staff",
    "price",
    "taste",
    "actor",
    "screen",
    "music",
    "dinner",
    "waiter",
]


def tiny_bert(
    folder: Path, texts: Sequence[str], hidden: int = 32, layers: int = 2, dropout: float = 0.0
) -> Path:
    """Write config.json, model.safetensors and tokenizer.json to ``folder``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator([*list(texts), " ".join(WORDS)], trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        pad_token_id=0,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(0)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    BertModel(config).save_pretrained(str(folder))
    return folder


def review_texts(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Short texts with a sentiment (good / bad words) and a topic (movie / food words)."""
    import random

    rng = random.Random(seed)
    pos, neg = WORDS[:5], WORDS[5:10]
    topics = {
        "movie": ["movie", "film", "plot", "actor", "screen", "music"],
        "food": ["food", "service", "staff", "taste", "dinner", "waiter"],
    }
    texts, sentiment, topic = [], [], []
    for _ in range(n):
        s = rng.choice(["pos", "neg"])
        t = rng.choice(list(topics))
        words = [rng.choice(pos if s == "pos" else neg) for _ in range(rng.randint(1, 3))]
        words += [rng.choice(topics[t]) for _ in range(rng.randint(1, 4))]
        words += [rng.choice(["the", "a"]) for _ in range(rng.randint(0, 8))]
        rng.shuffle(words)
        texts.append(" ".join(words))
        sentiment.append(s)
        topic.append(t)
    return texts, sentiment, topic
