"""A user's own components, living outside lemur, selected by class path in tests: an encoder, an
auxiliary loss and a logit term."""

from __future__ import annotations

import torch
from torch import nn

from lemur.encoders import TextEncoder
from lemur.losses import AuxiliaryLoss
from lemur.ranking import LogitTerm


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


class DocNormLoss(AuxiliaryLoss):
    """Keeps document vectors near a target norm: ``mean((|doc| - norm)^2)`` over the batch's targets."""

    def __init__(self, norm: float = 1.0, weight: float = 1.0, name: str | None = None) -> None:
        super().__init__(weight=weight, name=name)
        self.norm = norm

    def validate(self, ranker, key: str) -> None:
        if ranker.doc_encoder is None:
            raise ValueError(f"{key}: DocNormLoss needs model.doc_encoder")

    def forward(self, ranker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]) -> torch.Tensor:
        return (content["doc"].norm(dim=-1) - self.norm).pow(2).mean()


class UserBias(LogitTerm):
    """A learned bias per hashed user ID: ``bias[user_id % buckets] -> [B]``."""

    def __init__(self, buckets: int = 100) -> None:
        super().__init__()
        self.buckets = buckets
        self.bias = nn.Embedding(buckets, 1)
        nn.init.normal_(self.bias.weight)

    def forward(self, ranker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.bias(batch["user_id"] % self.buckets).squeeze(-1)
