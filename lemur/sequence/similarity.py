"""LEMUR's similarity module: cosine between the target document and each history item."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineSimilarityFeatures(nn.Module):
    """Raw and sorted cosine similarities of the target document to the history items.

    ``forward(target [B, D], items [B, L, D], mask [B, L] bool) -> [B, 2 * max_len]``

    The output is ``[s_1 .. s_max_len, sort_desc(s)_1 .. sort_desc(s)_max_len]`` with
    ``s_j = cos(target, items_j)`` in history order (the paper adds the sorted copy
    "to stabilise training"). Masked items (padding, never-written memory-bank
    entries) give 0 in the raw half and sort after every valid item (they are -inf
    during the sort, then 0), so the sorted half is the valid similarities in
    descending order followed by zeros. ``L`` is truncated (keeping the first
    ``max_len`` items, i.e. the most recent ones in lemur's history order) or padded
    with masked slots to ``max_len``, so the output width is fixed.

    Masked items are zeroed before the cosine, so non-finite values there cannot
    leak into gradients. The module does not detach ``items``: pass
    ``items.detach()`` (as memory-bank reads already are) to stop their gradient.

    Args:
        max_len: number of history slots in the output (``out_dim = 2 * max_len``).
        eps: norm floor for the cosine.
    """

    def __init__(self, max_len: int, eps: float = 1e-8) -> None:
        super().__init__()
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len <= 0:
            raise ValueError(f"CosineSimilarityFeatures: max_len must be a positive int, got {max_len!r}")
        if not eps > 0:
            raise ValueError(f"CosineSimilarityFeatures: eps must be > 0, got {eps!r}")
        self.max_len = max_len
        self.eps = eps
        self.out_dim = 2 * max_len

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, out_dim={self.out_dim}"

    def forward(self, target: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, 2 * max_len]``: raw similarities then the same sorted in descending order."""
        if (
            target.dim() != 2
            or items.dim() != 3
            or items.shape[0] != target.shape[0]
            or items.shape[2] != target.shape[1]
        ):
            raise ValueError(
                "CosineSimilarityFeatures: expected target [B, D] and items [B, L, D], "
                f"got {tuple(target.shape)} and {tuple(items.shape)}"
            )
        if tuple(mask.shape) != tuple(items.shape[:2]):
            raise ValueError(
                f"CosineSimilarityFeatures: mask must be [B, L] = {tuple(items.shape[:2])}, got {tuple(mask.shape)}"
            )
        items, mask = items[:, : self.max_len], mask[:, : self.max_len].bool()

        items = items.masked_fill(~mask[..., None], 0.0)
        t = F.normalize(target, dim=-1, eps=self.eps)
        e = F.normalize(items, dim=-1, eps=self.eps)
        sim = torch.einsum("bd,bld->bl", t, e)  # [B, L']

        pad = self.max_len - sim.shape[1]
        if pad > 0:
            sim = F.pad(sim, (0, pad))
            mask = F.pad(mask, (0, pad), value=False)
        raw = sim.masked_fill(~mask, 0.0)
        ranked = torch.sort(sim.masked_fill(~mask, float("-inf")), dim=1, descending=True).values
        ranked = ranked.masked_fill(torch.isneginf(ranked), 0.0)
        return torch.cat([raw, ranked], dim=1)
