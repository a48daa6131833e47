"""A history-similarity term on the click logit (not in the LEMUR paper): a ``LogitTerm`` plug-in.

The ranker sees a user's history through the memory bank's vectors of the documents the user
clicked before. A user's taste for content that queries do not express is a small part of trained
document vectors, so the cosine features and the backbone barely carry it, and the backbone's
randomly initialised weights give the encoder no consistent push to keep it. This term fixes the
sign from the first step: wherever a click is more likely than the rest of the model says, the
target document is pulled towards the user's history, elsewhere pushed away. Findings:
``docs/findings.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lemur.ranking.base import LogitTerm

if TYPE_CHECKING:
    from lemur.systems.ranker import LemurRanker


class HistorySimilarityLogit(LogitTerm):
    """``scale * cos(target document, mean of a history's bank vectors)``, added to the logit.

    As a ``LogitTerm``: ``forward(ranker, batch, content) -> [B]`` reads the history's memory-bank
    vectors with ``ranker.history_vectors(batch, history)`` and the target documents' vectors from
    ``content["doc"]``. The math alone: ``compute(target [B, D], table [U, D], index [B, L], mask [B, L])
    -> [B]`` with the items ``table[index]``, ``h = normalize(sum_{valid l} normalize(table[index[:, l]]))``
    and the term ``scale * cos(target, h)``, 0 for a row without a valid item. ``scale`` is learned.

    Args:
        history: which history sequence: ``"long"`` or ``"short"``.
        init_scale: the starting value of the learned ``scale`` (> 0).
        proj_dim, input_dim: optionally, both sides first go through one learned
            ``Linear(input_dim, proj_dim, bias=False)``: the cosine of a subspace the loss chooses;
            ``input_dim`` must equal ``doc_encoder.out_dim``.
    """

    def __init__(
        self,
        history: Literal["long", "short"] = "long",
        init_scale: float = 1.0,
        proj_dim: int | None = None,
        input_dim: int | None = None,
    ) -> None:
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

    def validate(self, ranker: LemurRanker, key: str) -> None:
        if ranker.memory_bank is None:
            raise ValueError(
                f"{key}: HistorySimilarityLogit compares target documents with their memory-bank "
                "histories: it needs model.memory_bank"
            )
        if self.input_dim is not None and self.input_dim != ranker.doc_encoder.out_dim:
            raise ValueError(
                f"{key}: HistorySimilarityLogit input_dim={self.input_dim} must equal "
                f"model.doc_encoder.out_dim={ranker.doc_encoder.out_dim}"
            )

    def forward(
        self, ranker: LemurRanker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The term ``[B]`` for the batch's target documents and their ``history`` sequence."""
        table, index, mask = ranker.history_vectors(batch, self.history)
        doc = content["doc"]
        return self.compute(doc, table.to(doc.dtype), index, mask)

    def compute(
        self, target: torch.Tensor, table: torch.Tensor, index: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``scale * cos(target, h)`` ``[B]`` for items ``table[index]`` (see the class)."""
        if target.dim() != 2 or table.dim() != 2 or table.shape[1] != target.shape[1]:
            raise ValueError(
                f"HistorySimilarityLogit: expected target [B, D] and table [U, D], "
                f"got {tuple(target.shape)} and {tuple(table.shape)}"
            )
        if index.shape != mask.shape or index.dim() != 2 or index.shape[0] != target.shape[0]:
            raise ValueError(
                f"HistorySimilarityLogit: index and mask must both be [B, L] with B = {target.shape[0]}, "
                f"got {tuple(index.shape)} and {tuple(mask.shape)}"
            )
        if self.proj is not None:
            target, table = self.proj(target), self.proj(table)
        if index.shape[1] == 0 or table.shape[0] == 0:
            return target.sum(-1) * 0.0
        items = F.normalize(table, dim=-1)
        # embedding_bag sums the picked rows without building [B, L, D] (as MeanPoolDecoder does)
        total = F.embedding_bag(index, items, mode="sum", per_sample_weights=mask.to(items.dtype))
        h = F.normalize(total, dim=-1)  # a zero sum (no valid item) stays zero
        return self.scale * (F.normalize(target, dim=-1) * h).sum(-1)
