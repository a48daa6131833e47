"""An impression-history token (not in the LEMUR paper): a ``FeatureToken`` plug-in.

The paper's histories hold the documents a user clicked. What a user was shown and passed over, and
how often they click at all, is thrown away, yet it is the first thing known about a user the ID
embedding has never seen. This token reads the impression sequence the DataModule builds when
``data.init_args.history.impressions_len > 0`` (``hist_imp``, ``hist_imp_label``, ``hist_imp_mask``:
the user's earlier events, clicked or not, strictly before the row) and hands the backbone one token
that pools the clicked and the skipped items separately, plus the counts and the smoothed click rate.
Findings: ``docs/findings.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lemur.ranking.base import FeatureToken

if TYPE_CHECKING:
    from lemur.systems.ranker import LemurRanker

KEYS = ("hist_imp", "hist_imp_label", "hist_imp_mask")


class ImpressionHistoryToken(FeatureToken):
    """``Linear([mean of clicked items, mean of skipped items, log1p(#clicked), log1p(#skipped),
    (#clicked + 1) / (#items + 2)])`` as one backbone token ``[B, token_dim]``.

    The items are the documents' memory-bank vectors (through a learned ``Linear(input_dim, token_dim)``;
    never-written entries are masked) when the ranker has a memory bank, else their document-ID
    embeddings (the table the target document's ID token uses). A row without earlier impressions
    gets zero means, zero counts and the rate 1/2. ``compute(table, index, label, mask)`` is the math
    alone, with the items ``table[index]``.

    Args:
        token_dim: the ranker's ``features.token_dim`` (write ``${model.init_args.features.token_dim}``).
        input_dim: the width of the memory-bank vectors (``doc_encoder.out_dim``); needed only with
            a memory bank.
    """

    def __init__(self, token_dim: int, input_dim: int | None = None) -> None:
        super().__init__()
        for name, value in (("token_dim", token_dim), ("input_dim", input_dim)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"ImpressionHistoryToken: {name} must be a positive int, got {value!r}")
        self.token_dim, self.input_dim = token_dim, input_dim
        self.item_proj = nn.Linear(input_dim, token_dim) if input_dim is not None else None
        self.out = nn.Linear(2 * token_dim + 3, token_dim)

    def validate(self, ranker: LemurRanker, key: str) -> None:
        bank = ranker.memory_bank
        if bank is not None and self.input_dim != bank.dim:
            raise ValueError(
                f"{key}: ImpressionHistoryToken reads the memory bank's vectors: set input_dim to "
                f"model.memory_bank.dim={bank.dim} (got {self.input_dim})"
            )
        if bank is None and self.input_dim is not None:
            raise ValueError(
                f"{key}: ImpressionHistoryToken input_dim={self.input_dim} is for memory-bank vectors, but the "
                "ranker has no memory bank (its items are document-ID embeddings): drop input_dim"
            )

    def forward(
        self, ranker: LemurRanker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        missing = [k for k in KEYS if k not in batch]
        if missing:
            raise ValueError(
                f"ImpressionHistoryToken: the batch has no {missing[0]!r}: set data.init_args.history.impressions_len "
                "> 0 so the DataModule builds the impression history"
            )
        label = batch["hist_imp_label"]
        if ranker.memory_bank is None:
            mask = batch["hist_imp_mask"].bool()
            docs, index = torch.unique(batch["hist_imp"], return_inverse=True)
            table = ranker.ids.doc_items(docs)
        else:
            vectors, index, mask = ranker.history_vectors(batch, "imp")
            table = self.item_proj(vectors.to(self.item_proj.weight.dtype))
        return self.compute(table, index, label, mask)

    def compute(
        self, table: torch.Tensor, index: torch.Tensor, label: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The token ``[B, token_dim]`` for items ``table[index]`` (``[U, token_dim]``, ``[B, L]``) with
        labels ``label [B, L]`` (1 = clicked) and ``mask [B, L]`` (False = padding or unusable)."""
        if not (index.shape == label.shape == mask.shape) or index.dim() != 2:
            raise ValueError(
                "ImpressionHistoryToken: index, label and mask must all be [B, L], got "
                f"{tuple(index.shape)}, {tuple(label.shape)} and {tuple(mask.shape)}"
            )
        clicked = (mask & (label == 1)).to(table.dtype)
        skipped = (mask & (label != 1)).to(table.dtype)
        n_clicked, n_skipped = clicked.sum(1, keepdim=True), skipped.sum(1, keepdim=True)
        if index.shape[1] == 0 or table.shape[0] == 0:
            zero = torch.zeros(index.shape[0], self.token_dim, dtype=self.out.weight.dtype, device=index.device)
            pooled = [zero, zero]
        else:
            # embedding_bag sums the picked rows without building [B, L, D] (as MeanPoolDecoder does)
            pooled = [
                F.embedding_bag(index, table, mode="sum", per_sample_weights=w) / n.clamp(min=1)
                for w, n in ((clicked, n_clicked), (skipped, n_skipped))
            ]
        rate = (n_clicked + 1) / (n_clicked + n_skipped + 2)
        return self.out(torch.cat([*pooled, torch.log1p(n_clicked), torch.log1p(n_skipped), rate], dim=1))
