"""ID and context-feature embeddings: the ranker's non-content inputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FeatureConfig:
    """Sizes of the ID and context feature embeddings."""

    token_dim: int = 64
    """Width of every feature token handed to the backbone."""
    user_buckets: int = 100_000
    """User-ID embedding rows; IDs are hashed into them (collisions allowed, as in production)."""
    doc_buckets: int = 200_000
    """Document-ID embedding rows (dense document index, hashed)."""
    cat_buckets: int = 1_000
    """Rows per categorical context feature (``cat_*`` columns, values hashed)."""
    num_dense: int = 1
    """Number of ``dense_*`` context columns the data carries (0 = none)."""
    num_cat: int = 1
    """Number of ``cat_*`` context columns the data carries (0 = none)."""

    def __post_init__(self) -> None:
        for name in ("token_dim", "user_buckets", "doc_buckets", "cat_buckets"):
            if getattr(self, name) < 1:
                raise ValueError(f"FeatureConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_dense", "num_cat"):
            if getattr(self, name) < 0:
                raise ValueError(f"FeatureConfig.{name} must be >= 0, got {getattr(self, name)}")


# A large odd multiplier spreads consecutive IDs over the buckets (Knuth multiplicative hashing).
_HASH = 0x9E3779B97F4A7C15 & 0x7FFFFFFFFFFFFFFF


def hash_bucket(ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """Map arbitrary int64 IDs to ``[0, buckets)``."""
    return torch.remainder(ids * _HASH, buckets)


class IdFeatures(nn.Module):
    """User ID, document ID and context features -> feature tokens ``[B, n_tokens, token_dim]``.

    Also embeds history items by document ID (``doc_items``), sharing the target's table.
    """

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        d = config.token_dim
        self.user = nn.Embedding(config.user_buckets, d)
        self.doc = nn.Embedding(config.doc_buckets, d)
        self.cat = nn.ModuleList(nn.Embedding(config.cat_buckets, d) for _ in range(config.num_cat))
        self.dense = nn.Linear(config.num_dense, d) if config.num_dense else None
        for emb in [self.user, self.doc, *self.cat]:
            nn.init.normal_(emb.weight, std=0.02)
        self.num_tokens = 2 + config.num_cat + (1 if config.num_dense else 0)

    def doc_items(self, doc_index: torch.Tensor) -> torch.Tensor:
        return self.doc(hash_bucket(doc_index, self.config.doc_buckets))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cat, dense = batch["cat"], batch["dense"]
        if cat.shape[1] != self.config.num_cat or dense.shape[1] != self.config.num_dense:
            raise ValueError(
                f"the data has {cat.shape[1]} cat_* and {dense.shape[1]} dense_* columns but the recipe's "
                f"model.features says num_cat={self.config.num_cat}, num_dense={self.config.num_dense}"
            )
        tokens = [
            self.user(hash_bucket(batch["user_id"], self.config.user_buckets)),
            self.doc_items(batch["doc_index"]),
        ]
        tokens += [emb(hash_bucket(cat[:, i], self.config.cat_buckets)) for i, emb in enumerate(self.cat)]
        if self.dense is not None:
            tokens.append(self.dense(dense))
        return torch.stack(tokens, dim=1)
