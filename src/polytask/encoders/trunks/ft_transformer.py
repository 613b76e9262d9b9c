"""FT-Transformer (Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular
Data", section 3.3): every input feature becomes a token, a [CLS] token is appended,
pre-norm transformer blocks run over the tokens, and the [CLS] token's final
LayerNorm -> ReLU is the representation (the paper's prediction head is that and one
Linear: the task heads).

- The tokenizer maps each input feature's slice of the joined input (a numeric column's
  value, a categorical column's embedding, a text or image column's vector; see
  ``TabularEncoder.feature_widths``) to ``d_token`` with its own linear map and bias, so
  it works whatever width a feature's encoding has. The [CLS] token is one more token
  with no input: its bias.
- Blocks as the paper's: multi-head self-attention and a ReGLU feed-forward (inner width
  ``ffn_factor * d_token``), each ``x + Dropout(f(LayerNorm(x)))``; the first block's
  first LayerNorm is left out, as in the paper.
- Attention is written with ``nn.Linear`` projections (no ``nn.MultiheadAttention``), so
  the Gramian engine's layer rules cover every parameter.

``model.hidden``, ``model.dropout`` and ``model.activation`` do not apply; the trunk's
own options (``model.trunk_options``) set its width, depth and dropouts."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from polytask.encoders.trunks.base import Trunk, TrunkOptions, TrunkSpec, with_width


class FTTransformerOptions(TrunkOptions):
    #: width of every token
    d_token: PositiveInt = 64
    #: number of transformer blocks
    n_blocks: PositiveInt = 2
    #: attention heads (d_token must be a multiple of it)
    heads: PositiveInt = 8
    attention_dropout: float = Field(0.2, ge=0, lt=1)
    #: the ReGLU feed-forward's inner width as a multiple of d_token
    ffn_factor: float = Field(4 / 3, gt=0)
    ffn_dropout: float = Field(0.1, ge=0, lt=1)
    residual_dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> FTTransformerOptions:
        if self.d_token % self.heads:
            raise ValueError(f"d_token ({self.d_token}) must be a multiple of heads ({self.heads})")
        return self


class FeatureTokenizer(nn.Module):
    """(N, Σ widths) -> (N, features + 1, d): token j = x[slice j] @ W_j + b_j, and the
    last token ([CLS]) = b_cls. ``weight`` holds every W_j's rows, one row per input
    column; ``bias`` one row per token."""

    def __init__(self, widths: Sequence[int], d: int):
        super().__init__()
        total, n = sum(widths), len(widths)
        bound = 1 / math.sqrt(d)
        self.weight = nn.Parameter(torch.empty(total, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n + 1, d).uniform_(-bound, bound))
        #: each input column's token
        owner = torch.repeat_interleave(
            torch.arange(n), torch.tensor(list(widths), dtype=torch.long)
        )
        self.owner: torch.Tensor
        self.membership: torch.Tensor
        self.register_buffer("owner", owner, persistent=False)
        membership = torch.zeros(n, total)
        membership[owner, torch.arange(total)] = 1.0
        self.register_buffer("membership", membership, persistent=False)
        self.one_each = total == n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.unsqueeze(-1) * self.weight  # (N, total, d)
        tokens = parts if self.one_each else torch.matmul(self.membership, parts)
        cls = tokens.new_zeros(tokens.shape[0], 1, tokens.shape[2])
        return torch.cat([tokens, cls], dim=1) + self.bias

    @staticmethod
    def gramian_rule(
        module: nn.Module, x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool
    ) -> torch.Tensor:
        """The task Gramian of the tokenizer's parameters (the Gramian engine's layer
        rule): W's row of input column i gets Σ_n x[n, i] g[n, token(i)]."""
        assert isinstance(module, FeatureTokenizer)
        t = g.shape[0]
        gram = g.new_zeros(t, t)
        if want_w:
            rows = torch.einsum("ni,tnid->tid", x, g[:, :, module.owner])
            gram += rows.reshape(t, -1) @ rows.reshape(t, -1).T
        if want_b:
            rows = g.sum(1).reshape(t, -1)
            gram += rows @ rows.T
        return gram


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, f, d = x.shape
        q, k, v = self.qkv(x).view(n, f, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        mixed = torch.matmul(self.dropout(torch.softmax(scores, dim=-1)), v)
        return self.out(mixed.transpose(1, 2).reshape(n, f, d))


class ReGLU(nn.Module):
    def __init__(self, d: int, inner: int, dropout: float):
        super().__init__()
        self.inner = nn.Linear(d, 2 * inner)
        self.dropout = nn.Dropout(dropout)
        self.outer = nn.Linear(inner, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.inner(x).chunk(2, dim=-1)
        return self.outer(self.dropout(a * torch.relu(b)))


class Block(nn.Module):
    def __init__(self, o: FTTransformerOptions, first: bool):
        super().__init__()
        d = o.d_token
        self.norm1: nn.Module = nn.Identity() if first else nn.LayerNorm(d)
        self.attention = SelfAttention(d, o.heads, o.attention_dropout)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = ReGLU(d, max(1, round(o.ffn_factor * d)), o.ffn_dropout)
        self.residual_dropout = nn.Dropout(o.residual_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.residual_dropout(self.attention(self.norm1(x)))
        return x + self.residual_dropout(self.ffn(self.norm2(x)))


class ReadCLS(nn.Module):
    """(N, tokens, d) -> ReLU(LayerNorm(the last token)), (N, d)."""

    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(x[:, -1]))


class FTTransformerTrunk(Trunk):
    name = "ft_transformer"
    Options = FTTransformerOptions

    @classmethod
    def build(cls, spec: TrunkSpec, options: TrunkOptions) -> nn.Sequential:
        assert isinstance(options, FTTransformerOptions)
        d = options.d_token
        blocks = [Block(options, first=i == 0) for i in range(options.n_blocks)]
        stack = nn.Sequential(FeatureTokenizer(spec.feature_widths, d), *blocks, ReadCLS(d))
        return with_width(stack, d)
