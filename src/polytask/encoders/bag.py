"""Multi-hot and sequence columns: the mean of the items' embeddings (``EmbeddingBag``)."""

from __future__ import annotations

import torch
from torch import nn

from polytask.features.multihot import PAD


class BagEmbedding(nn.Module):
    """(N, L) item codes, 0-padded -> (N, dim): the mean of each row's item embeddings
    (padding excluded; a row without items gives zeros)."""

    def __init__(self, cardinality: int, dim: int):
        super().__init__()
        self.bag = nn.EmbeddingBag(cardinality, dim, mode="mean", padding_idx=PAD)
        self.out_features = dim

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.bag(codes)
