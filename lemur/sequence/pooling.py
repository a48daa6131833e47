"""The simplest history decoder: masked mean pooling (ignores the query token)."""

from __future__ import annotations

import torch

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
