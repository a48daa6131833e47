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

    Optionally (``proj_dim``, not in the paper) both sides first go through one learned
    ``Linear(input_dim, proj_dim, bias=False)``, so the cosine is taken in a subspace the ranker's
    loss chooses (e.g. the directions that say whether a user likes a document, when they are a
    small part of the vectors) rather than over the whole vector.

    Args:
        max_len: number of history slots in the output (``out_dim = 2 * max_len``).
        eps: norm floor for the cosine.
        proj_dim: None (the paper): cosine of the vectors themselves; an int: of their projections.
        input_dim: the vectors' width (needed with ``proj_dim``).
    """

    def __init__(self, max_len: int, eps: float = 1e-8, proj_dim: int | None = None, input_dim: int | None = None) -> None:
        super().__init__()
        for name, value in (("proj_dim", proj_dim), ("input_dim", input_dim)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"CosineSimilarityFeatures: {name} must be a positive int or null, got {value!r}")
        if proj_dim is not None and input_dim is None:
            raise ValueError("CosineSimilarityFeatures: proj_dim needs input_dim (the width of the document vectors)")
        self.proj_dim, self.input_dim = proj_dim, input_dim
        self.proj = nn.Linear(input_dim, proj_dim, bias=False) if proj_dim is not None else None
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len <= 0:
            raise ValueError(f"CosineSimilarityFeatures: max_len must be a positive int, got {max_len!r}")
        if not eps > 0:
            raise ValueError(f"CosineSimilarityFeatures: eps must be > 0, got {eps!r}")
        self.max_len = max_len
        self.eps = eps
        self.out_dim = 2 * max_len

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, out_dim={self.out_dim}, proj_dim={self.proj_dim}"

    def forward(self, target: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, 2 * max_len]``: raw similarities then the same sorted in descending order."""
        if target.dim() != 2 or items.dim() != 3 or items.shape[0] != target.shape[0] or items.shape[2] != target.shape[1]:
            raise ValueError(
                f"CosineSimilarityFeatures: expected target [B, D] and items [B, L, D], got {tuple(target.shape)} and {tuple(items.shape)}"
            )
        if tuple(mask.shape) != tuple(items.shape[:2]):
            raise ValueError(f"CosineSimilarityFeatures: mask must be [B, L] = {tuple(items.shape[:2])}, got {tuple(mask.shape)}")
        items, mask = items[:, : self.max_len], mask[:, : self.max_len].bool()

        items = items.masked_fill(~mask[..., None], 0.0)
        if self.proj is not None:
            target, items = self.proj(target), self.proj(items)
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


class HistorySimilarityLogit(nn.Module):
    """A logit term ``scale * cos(target, history mean)`` added to the backbone's logit (not in the paper).

    ``forward(target [B, D], table [U, D], index [B, L], mask [B, L] bool) -> [B]``

    The history items are ``table[index]`` (the distinct documents' memory-bank vectors, as the
    ranker reads them); ``h = normalize(sum_{valid l} normalize(table[index[:, l]]))`` and the term is
    ``scale * cos(target, h)``, 0 for a row without a valid item. ``scale`` is learned and starts at
    ``init_scale`` > 0.

    Why a term on the logit and not one more feature token: a user's taste for content that queries
    do not express (LEMUR-Synth's marker words) is a small part of trained document vectors, so the
    cosine features and the backbone's dot products barely carry it, and the backbone's randomly
    initialised weights give the encoder no consistent push to keep it (README, "Memory bank"). Here
    the sign is fixed from the first step: wherever the click is more likely than the rest of the
    model says, the target document is pulled towards the user's history, elsewhere pushed away, so the
    encoder is trained to place documents that the same users click close together, and the ranker
    uses that closeness directly. Sessions fix the topic through the query, so within one session it
    is the content that users' tastes act on that decides the push.

    Args:
        history: which history sequence: ``"long"`` or ``"short"``.
        init_scale: the starting value of the learned ``scale`` (> 0).
        proj_dim, input_dim: optionally, both sides first go through one learned
            ``Linear(input_dim, proj_dim, bias=False)``: the cosine of a subspace the loss chooses.
    """

    def __init__(self, history: str = "long", init_scale: float = 1.0, proj_dim: int | None = None,
                 input_dim: int | None = None) -> None:
        super().__init__()
        if history not in ("long", "short"):
            raise ValueError(f"HistorySimilarityLogit: history must be 'long' or 'short', got {history!r}")
        if not isinstance(init_scale, (int, float)) or isinstance(init_scale, bool) or not init_scale > 0:
            raise ValueError(f"HistorySimilarityLogit: init_scale must be a positive number, got {init_scale!r}")
        for name, value in (("proj_dim", proj_dim), ("input_dim", input_dim)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"HistorySimilarityLogit: {name} must be a positive int or null, got {value!r}")
        if proj_dim is not None and input_dim is None:
            raise ValueError("HistorySimilarityLogit: proj_dim needs input_dim (the width of the document vectors)")
        self.history, self.proj_dim, self.input_dim = history, proj_dim, input_dim
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.proj = nn.Linear(input_dim, proj_dim, bias=False) if proj_dim is not None else None

    def extra_repr(self) -> str:
        return f"history={self.history!r}, proj_dim={self.proj_dim}"

    def forward(self, target: torch.Tensor, table: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if target.dim() != 2 or table.dim() != 2 or table.shape[1] != target.shape[1]:
            raise ValueError(f"HistorySimilarityLogit: expected target [B, D] and table [U, D], got {tuple(target.shape)} and {tuple(table.shape)}")
        if index.shape != mask.shape or index.dim() != 2 or index.shape[0] != target.shape[0]:
            raise ValueError(f"HistorySimilarityLogit: index and mask must both be [B, L] with B = {target.shape[0]}, "
                             f"got {tuple(index.shape)} and {tuple(mask.shape)}")
        if self.proj is not None:
            target, table = self.proj(target), self.proj(table)
        if index.shape[1] == 0 or table.shape[0] == 0:
            return target.sum(-1) * 0.0
        items = F.normalize(table, dim=-1)
        # embedding_bag sums the picked rows without building [B, L, D] (as MeanPoolDecoder does)
        total = F.embedding_bag(index, items, mode="sum", per_sample_weights=mask.to(items.dtype))
        h = F.normalize(total, dim=-1)  # a zero sum (no valid item) stays zero
        return self.scale * (F.normalize(target, dim=-1) * h).sum(-1)
