"""History-to-target contrastive loss (not in the LEMUR paper).

The ranker sees a user's history as memory-bank vectors of the documents the user clicked
before, compared with the target document by cosine (``CosineSimilarityFeatures``) and mean
pooling. Those features only help when documents one user clicks lie close together in the
encoder's space. BCE reaches the encoder through the target document alone, and SQDC pulls every
document towards its queries, so a personal signal the query does not express (a user's taste for
some content) can get lost from the vectors (see README, "Memory bank").

This loss trains the geometry the history features rely on: each clicked target document is pulled
towards the mean of its user's history vectors and pushed away from the other users' histories in
the batch (InfoNCE, as a two-tower retrieval model does with a user tower). The history side is a
memory-bank read (no gradient, like every bank read), so only the freshly encoded targets learn;
the bank, written from the same encoder, follows.

Hand-written because no library offers a masked InfoNCE over a bank of history vectors: the
same-user mask and the valid-entry pooling are specific to this model.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


class HistoryContrastiveLoss(nn.Module):
    """InfoNCE between clicked target documents and their users' history means.

    ``forward(doc [B, D], history [B, L, D], mask [B, L], label [B], user_id [B]) -> []``

    Over the rows ``i`` with ``label > 0.5`` and at least one valid history item, with
    ``h_i = normalize(mean_{valid l} normalize(history[i, l]))``::

        L_i = -log( exp(s cos(d_i, h_i)) / sum_j A_ij exp(s cos(d_i, h_j)) )

    ``j`` over the same rows; ``A_ij = 0`` when ``i != j`` and both rows belong to the same user
    (the same history: a false negative), else 1. With ``symmetric`` the history->document
    direction (``h_i`` against the other rows' documents) is averaged in.

    Args:
        scale: ``s``, multiplies the cosine (> 0; a softmax temperature of ``1 / s``).
        history: which history sequence of the batch gives ``h``: ``"long"`` or ``"short"``.
        symmetric: average the document->history and history->document cross-entropies.
        dims: None: whole vectors; an int: only ``dims`` coordinates enter the loss, from ``skip`` on.
        skip: coordinates before this one are left out (e.g. ``skip=64, dims=64`` trains only the
            second half of a ``ConcatTextEncoder`` vector, away from SQDC's first half).

    A batch with fewer than two usable rows returns a zero still connected to ``doc``.
    """

    def __init__(self, scale: float = 20.0, history: Literal["long", "short"] = "long", symmetric: bool = True,
                 dims: int | None = None, skip: int = 0) -> None:
        super().__init__()
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
            raise ValueError(f"HistoryContrastiveLoss: scale must be a positive number, got {scale!r}")
        if history not in ("long", "short"):
            raise ValueError(f"HistoryContrastiveLoss: history must be 'long' or 'short', got {history!r}")
        if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims <= 0):
            raise ValueError(f"HistoryContrastiveLoss: dims must be a positive int or null, got {dims!r}")
        if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
            raise ValueError(f"HistoryContrastiveLoss: skip must be an int >= 0, got {skip!r}")
        self.scale, self.history, self.symmetric, self.dims, self.skip = float(scale), history, bool(symmetric), dims, skip

    @property
    def width(self) -> int | None:
        """The vector width this loss needs at least (None: any)."""
        return None if self.dims is None and self.skip == 0 else self.skip + (self.dims or 1)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, history={self.history!r}, symmetric={self.symmetric}, dims={self.dims}, skip={self.skip}"

    @staticmethod
    def history_mean(history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: normalised mean of the normalised valid items (zero where none is valid)."""
        items = F.normalize(history.float(), dim=-1) * mask[..., None].float()
        return F.normalize(items.sum(1), dim=-1)

    def forward(self, doc: torch.Tensor, history: torch.Tensor, mask: torch.Tensor, label: torch.Tensor,
                user_id: torch.Tensor) -> torch.Tensor:
        if doc.dim() != 2 or history.dim() != 3 or history.shape[0] != doc.shape[0] or history.shape[2] != doc.shape[1]:
            raise ValueError(f"HistoryContrastiveLoss: doc must be [B, D] and history [B, L, D], got {tuple(doc.shape)} and {tuple(history.shape)}")
        if tuple(mask.shape) != tuple(history.shape[:2]):
            raise ValueError(f"HistoryContrastiveLoss: mask must be [B, L] = {list(history.shape[:2])}, got {tuple(mask.shape)}")
        if self.width is not None:
            if self.width > doc.shape[1]:
                raise ValueError(f"HistoryContrastiveLoss: skip={self.skip} + dims={self.dims} exceeds the vector width {doc.shape[1]}")
            end = None if self.dims is None else self.skip + self.dims
            doc, history = doc[:, self.skip : end], history[..., self.skip : end]
        mask = mask.bool()
        rows = (label > 0.5) & mask.any(1)
        if int(rows.sum()) < 2:
            return doc.sum() * 0.0
        d = F.normalize(doc[rows].float(), dim=-1)
        h = self.history_mean(history[rows], mask[rows]).to(d.dtype)
        user = user_id[rows]
        logits = self.scale * (d @ h.T)  # [P, P]: document i vs history j
        same_user = (user[:, None] == user[None, :]) & ~torch.eye(len(user), dtype=torch.bool, device=d.device)
        logits = logits.masked_fill(same_user, float("-inf"))
        target = torch.arange(len(user), device=d.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
        return loss
