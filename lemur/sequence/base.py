"""The contract of a history (sequence) decoder."""

from __future__ import annotations

import abc

import torch
from torch import nn


class SequenceDecoder(nn.Module, abc.ABC):
    """Summarises a user's history into one vector, guided by a global query token.

    ``forward(query [B, D], items [B, L, D], mask [B, L] bool) -> [B, out_dim]``.
    ``query`` is built from the row's other features (``D = token_dim`` of the ranker);
    ``mask`` is False for padding (and for never-written memory-bank entries).
    Rows with no valid item must return a finite vector.
    """

    out_dim: int
    uses_query: bool = True
    """False for decoders that ignore ``query``: the ranker then builds no global token (whose
    parameters would otherwise go unused, which DDP rejects)."""

    @abc.abstractmethod
    def forward(self, query: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...

    def forward_indexed(
        self, query: torch.Tensor, table: torch.Tensor, index: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``forward(query, table[index], mask)`` for items given as distinct vectors ``table [U, D]``
        and ``index [B, L]`` into it: how the ranker passes histories (each distinct document of the
        batch read and projected once). Override it where the decoder can skip building ``[B, L, D]``."""
        return self(query, table[index], mask)
