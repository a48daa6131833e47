"""A user's own component, living outside lemur, selected by class path in tests."""

from __future__ import annotations

import torch
from torch import nn

from lemur.encoders import TextEncoder


class BagOfWordsEncoder(TextEncoder):
    """Masked mean of token embeddings, projected: ``forward(tokens [B,T], mask [B,T], types) -> [B, out_dim]``."""

    def __init__(self, vocab_size: int = 30522, dim: int = 16, out_dim: int = 32) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.embed = nn.Embedding(vocab_size, dim)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        w = mask.to(torch.float32)[..., None]
        return self.proj((self.embed(tokens) * w).sum(1) / w.sum(1).clamp(min=1.0))
