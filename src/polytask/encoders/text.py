"""Text encoders: token ids (N, L) -> one vector per text (N, D).

``lstm``: embedding + (Bi)LSTM over the real tokens (packed, so padding never enters the
recurrence), mean- and max-pooled. ``transformer``: embedding + learned positions + a
small pre-norm transformer encoder, mean-pooled over real tokens. ``pretrained`` (a
Hugging Face backbone, fine-tuned or frozen; what ``sentence`` now means) is
:mod:`polytask.encoders.pretrained`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# the tokenizer's options and padding id live with the tokenizer (features), below
from polytask.features.text import PAD_ID, TextOptions

__all__ = ["PAD_ID", "TextOptions"]


def _real_tokens(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(mask of real tokens, lengths, longest length in the batch)."""
    mask = ids != PAD_ID
    lengths = mask.sum(dim=1)
    return mask, lengths, int(lengths.max()) if lengths.numel() else 0


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class LSTMTextEncoder(nn.Module):
    def __init__(self, vocab_size: int, options: TextOptions):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, options.embedding_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(
            options.embedding_dim,
            options.hidden,
            num_layers=options.layers,
            batch_first=True,
            bidirectional=options.bidirectional,
            dropout=options.dropout if options.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(options.dropout)
        self.out_features = 2 * options.hidden * (2 if options.bidirectional else 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask, lengths, longest = _real_tokens(ids)
        longest = max(longest, 1)
        ids, mask = ids[:, :longest], mask[:, :longest]
        x = self.dropout(self.embedding(ids))
        # empty texts run as one padding token; their pooled output is then masked to 0
        packed = pack_padded_sequence(
            x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=longest)
        mean = masked_mean(out, mask)
        big_negative = torch.finfo(out.dtype).min
        top = out.masked_fill(~mask.unsqueeze(-1), big_negative).amax(dim=1)
        top = torch.where(lengths.unsqueeze(-1) > 0, top, torch.zeros_like(top))
        return torch.cat([mean, top], dim=1)


class TransformerTextEncoder(nn.Module):
    def __init__(self, vocab_size: int, options: TextOptions):
        super().__init__()
        d = options.hidden
        self.embedding = nn.Embedding(vocab_size, d, padding_idx=PAD_ID)
        self.position = nn.Embedding(options.max_length, d)
        layer = nn.TransformerEncoderLayer(
            d,
            options.heads,
            dim_feedforward=2 * d,
            dropout=options.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, options.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.out_features = d

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask, _, longest = _real_tokens(ids)
        longest = max(longest, 1)
        ids, mask = ids[:, :longest], mask[:, :longest]
        pos = torch.arange(longest, device=ids.device)
        x = self.embedding(ids) + self.position(pos)
        # an all-padding row would make attention NaN: let it attend to its first slot
        attend = mask.clone()
        attend[:, 0] = True
        x = self.encoder(x, src_key_padding_mask=~attend)
        return masked_mean(self.norm(x), mask)


def text_encoder(vocab_size: int, options: TextOptions, embedding_dim: int = 0) -> nn.Module:
    """An encoder trained from scratch on the column's own tokenizer (``lstm`` or
    ``transformer``; ``pretrained`` columns: :func:`polytask.encoders.build.column_encoder`)."""
    if options.encoder == "lstm":
        return LSTMTextEncoder(vocab_size, options)
    if options.encoder == "transformer":
        if options.hidden % options.heads:
            from polytask.errors import PolytaskError

            raise PolytaskError(
                f"model.text: hidden={options.hidden} is not divisible by heads="
                f"{options.heads}; pick heads that divide hidden"
            )
        return TransformerTextEncoder(vocab_size, options)
    raise ValueError(f"text_encoder builds lstm and transformer, not {options.encoder}")
