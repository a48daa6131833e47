"""Per-user and per-document bias terms on the click logit (a wide part; not in the LEMUR paper).

The deep part sees IDs only through embeddings and an MLP. A logistic regression on one-hot user and
document IDs, a practitioners' baseline, is exactly two bias tables; this ``LogitTerm`` adds them to the
ranker's logit (wide & deep), so the ranker holds that baseline as a special case. Findings:
``docs/findings.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from lemur.ranking.base import LogitTerm
from lemur.ranking.features import hash_bucket

if TYPE_CHECKING:
    from lemur.systems.ranker import LemurRanker


class IdBiasLogit(LogitTerm):
    """``user_bias[hash(user_id)] + doc_bias[hash(doc_index)]`` added to the logit, both tables starting at 0.

    An ID never trained on keeps bias 0, as a logistic regression gives an unseen one-hot column.

    Args:
        user_buckets, doc_buckets: rows of the two bias tables (IDs are hashed into them like
            ``lemur.ranking.IdFeatures`` does; 0 drops that table).
        scale: the tables are multiplied by it. Adam moves a parameter by about the learning rate per
            step whatever its scale, so ``scale`` multiplies the biases' step in logit units: a bias
            seen in few batches can reach the size a converged logistic regression gives it.
    """

    def __init__(self, user_buckets: int = 100_000, doc_buckets: int = 200_000, scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
            raise ValueError(f"IdBiasLogit: scale must be a positive number, got {scale!r}")
        self.scale = float(scale)
        for name, value in (("user_buckets", user_buckets), ("doc_buckets", doc_buckets)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"IdBiasLogit: {name} must be an int >= 0, got {value!r}")
        if user_buckets == doc_buckets == 0:
            raise ValueError("IdBiasLogit: user_buckets and doc_buckets are both 0: the term would add nothing")
        self.user = nn.Embedding(user_buckets, 1) if user_buckets else None
        self.doc = nn.Embedding(doc_buckets, 1) if doc_buckets else None
        for table in (self.user, self.doc):
            if table is not None:
                nn.init.zeros_(table.weight)

    def forward(
        self, ranker: LemurRanker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        out = torch.zeros(len(batch["doc_index"]), device=batch["doc_index"].device)
        if self.user is not None:
            out = out + self.user(hash_bucket(batch["user_id"], self.user.num_embeddings)).squeeze(1)
        if self.doc is not None:
            out = out + self.doc(hash_bucket(batch["doc_index"], self.doc.num_embeddings)).squeeze(1)
        return self.scale * out
