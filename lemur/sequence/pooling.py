"""The simplest history decoder: masked mean pooling (ignores the query token)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lemur.sequence.base import SequenceDecoder


class MeanPoolDecoder(SequenceDecoder):
    """Masked mean of the history items; zeros for an empty history.

    Args:
        dim: item size, which is also ``out_dim``.
    """

    uses_query = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, query: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(items.dtype)
        total = (items * weights[..., None]).sum(1)
        return total / weights.sum(1, keepdim=True).clamp(min=1.0)

    def forward_indexed(
        self, query: torch.Tensor, table: torch.Tensor, index: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        # embedding_bag sums the picked rows weighted by the mask without building [B, L, D], and its
        # backward adds into [U, D] directly: a 1,000-long history then costs about what the table costs.
        weights = mask.to(table.dtype)
        if index.shape[1] == 0:
            return table.new_zeros(index.shape[0], table.shape[1])
        total = F.embedding_bag(index, table, mode="sum", per_sample_weights=weights)
        return total / weights.sum(1, keepdim=True).clamp(min=1.0)
