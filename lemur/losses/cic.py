"""CIC: content-ID contrastive loss (EM3, arXiv 2404.06078).

Aligns each document's content embedding with its own ID embedding, using the
other documents of the batch as negatives. In the LEMUR paper it is an add-on that
turned out redundant under joint training (-0.02% QAUC).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lemur.losses.base import AuxiliaryLoss

if TYPE_CHECKING:
    from lemur.systems.ranker import LemurRanker


class CICLoss(AuxiliaryLoss):
    """Symmetric InfoNCE between content vectors and ID vectors of the same documents (an ``AuxiliaryLoss``).

    As an auxiliary loss of ``LemurRanker`` (paper Table 5, "+CIC"), ``forward(ranker, batch, content) -> []``
    compares each target document's encoder vector ``content["doc"] [B, Dc]`` with its ID embedding
    ``ranker.ids.doc_items(batch["doc_index"]) [B, De]``; ``content_dim`` must equal ``doc_encoder.out_dim``
    and ``id_dim`` the ranker's ``features.token_dim``. The math alone:
    ``compute(content [B, Dc], ids [B, De], doc_index [B] | None) -> []``.

    Both sides are L2-normalised; ``logits = cos(c_i, e_j) / temperature``; the loss
    is the mean of the content->ID and ID->content cross-entropies with the diagonal
    as target. When ``content_dim != id_dim`` both sides first go through a learned
    ``Linear(·, dim)`` projection; when they are equal no projection is used and
    ``dim`` is ignored.

    Duplicates: when ``doc_index`` is given, a pair ``(i, j)`` with ``i != j`` and the
    same ``doc_index`` is dropped from both softmaxes (a false negative); without it
    a document repeated in the batch counts as its own negative.

    Args:
        content_dim: ``Dc``, size of the content vectors.
        id_dim: ``De``, size of the ID-embedding vectors.
        dim: shared projection size, used only when the two dims differ.
        temperature: softmax temperature (> 0; divides the cosine).
        weight, name: see ``AuxiliaryLoss`` (logged as ``train/cic``).
    """

    def __init__(
        self,
        content_dim: int,
        id_dim: int,
        dim: int = 64,
        temperature: float = 0.07,
        weight: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name)
        for name, value in (("content_dim", content_dim), ("id_dim", id_dim), ("dim", dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"CICLoss: {name} must be a positive int, got {value!r}")
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            raise ValueError(f"CICLoss: temperature must be a positive number, got {temperature!r}")
        self.content_dim = content_dim
        self.id_dim = id_dim
        self.temperature = float(temperature)
        self.content_proj: nn.Module
        self.id_proj: nn.Module
        if content_dim == id_dim:
            self.content_proj, self.id_proj = nn.Identity(), nn.Identity()
        else:
            self.content_proj, self.id_proj = nn.Linear(content_dim, dim), nn.Linear(id_dim, dim)

    def extra_repr(self) -> str:
        dims = f"content_dim={self.content_dim}, id_dim={self.id_dim}"
        return f"{dims}, temperature={self.temperature}, weight={self.weight}"

    def validate(self, ranker: LemurRanker, key: str) -> None:
        if ranker.doc_encoder is None:
            raise ValueError(
                f"{key}: CICLoss aligns document-encoder vectors with ID embeddings: it needs model.doc_encoder"
            )
        if (self.content_dim, self.id_dim) != (ranker.doc_encoder.out_dim, ranker.token_dim):
            raise ValueError(
                f"{key}: CICLoss content_dim={self.content_dim}, id_dim={self.id_dim} must equal "
                f"model.doc_encoder.out_dim={ranker.doc_encoder.out_dim} and "
                f"model.features.token_dim={ranker.token_dim}"
            )

    def forward(
        self, ranker: LemurRanker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """CIC of the batch's target documents: encoder vectors vs their ID embeddings (a scalar)."""
        doc_index = batch["doc_index"]
        return self.compute(content["doc"], ranker.ids.doc_items(doc_index), doc_index)

    def compute(self, content: torch.Tensor, ids: torch.Tensor, doc_index: torch.Tensor | None = None) -> torch.Tensor:
        """Mean symmetric InfoNCE (a scalar).

        Args:
            content: ``[B, content_dim]`` content embeddings.
            ids: ``[B, id_dim]`` ID embeddings of the same documents, row-aligned.
            doc_index: optional ``[B]`` integer document IDs for false-negative masking.
        """
        if content.dim() != 2 or ids.dim() != 2 or content.shape[0] != ids.shape[0]:
            raise ValueError(
                "CICLoss: content and ids must be [B, Dc] and [B, De], "
                f"got {tuple(content.shape)} and {tuple(ids.shape)}"
            )
        if content.shape[1] != self.content_dim or ids.shape[1] != self.id_dim:
            raise ValueError(
                f"CICLoss: expected dims ({self.content_dim}, {self.id_dim}), got ({content.shape[1]}, {ids.shape[1]})"
            )
        batch = content.shape[0]
        if doc_index is not None and tuple(doc_index.shape) != (batch,):
            raise ValueError(f"CICLoss: doc_index must be [B] = [{batch}], got {tuple(doc_index.shape)}")
        if batch == 0:
            return (content.sum() + ids.sum()) * 0.0

        c, e = self.content_proj(content), self.id_proj(ids)
        dtype = torch.promote_types(torch.promote_types(c.dtype, e.dtype), torch.float32)  # at least float32
        c, e = F.normalize(c.to(dtype), dim=-1), F.normalize(e.to(dtype), dim=-1)
        logits = (c @ e.T) / self.temperature  # [B, B]
        if doc_index is not None:
            eye = torch.eye(batch, dtype=torch.bool, device=logits.device)
            duplicate = (doc_index[:, None] == doc_index[None, :]) & ~eye
            logits = logits.masked_fill(duplicate, float("-inf"))
        target = torch.arange(batch, device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
