"""SQDC: the Session-masked Query-to-Document Contrastive loss of LEMUR.

Over the rows ``i`` with label 1::

    L_i = -log( exp(T cos(q_i, d_i)) / sum_j A_ij exp(T cos(q_i, d_j)) )

with ``j`` over the batch and ``A_ij = 0`` when ``i != j`` and rows ``i`` and ``j``
share a session ID (documents shown for the same query are highly correlated, so
they make poor negatives), else 1. ``T`` multiplies the cosine (the paper's best is
``T = 50``). The loss is the mean of ``L_i`` over the positive rows.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

_NEGATIVES = ("all", "positives")


class SQDCLoss(nn.Module):
    """Session-masked query-to-document InfoNCE over in-batch documents.

    ``forward(q [B, D], d [B, D], label [B], session_id [B], doc_index [B] | None) -> []``

    Args:
        temperature: ``T``, multiplies the cosine similarity (> 0; paper: 50).
        session_mask: drop same-session rows ``j != i`` from the denominator; False is
            the paper's "no session mask" ablation (plain InfoNCE over the positives).
        negatives: ``"all"``: ``j`` runs over every in-batch row; ``"positives"``: only
            over rows with label 1 (the paper saw no difference between the two).

    Rows are positive when ``label > 0.5`` (label 1 for 0/1 labels). ``A_ii = 1``
    always, so the positive document is always in its own denominator.

    Duplicate documents: when the same document appears in several rows (e.g. shown
    in two sessions), a row ``j != i`` holding row ``i``'s own document is, by
    default, counted as a negative of ``i`` (a false negative: its logit equals the
    positive's, so ``L_i >= log 2``). Pass ``doc_index`` (one ID per row) to also drop
    every ``j != i`` with ``doc_index[j] == doc_index[i]`` from ``i``'s denominator.

    A batch without a positive row returns a zero that is still connected to ``q``
    and ``d`` (so ``backward()`` works and gives zero gradients). The similarity
    matrix is computed in (at least) float32 with autocast disabled; ``T = 50`` makes bf16
    cosines too coarse.
    """

    def __init__(
        self,
        temperature: float = 50.0,
        session_mask: bool = True,
        negatives: Literal["all", "positives"] = "all",
    ) -> None:
        super().__init__()
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            raise ValueError(
                f"SQDCLoss: temperature must be a positive number (it multiplies the cosine), got {temperature!r}"
            )
        if not isinstance(session_mask, bool):
            raise ValueError(f"SQDCLoss: session_mask must be a bool, got {session_mask!r}")
        if negatives not in _NEGATIVES:
            raise ValueError(f"SQDCLoss: negatives must be one of {_NEGATIVES}, got {negatives!r}")
        self.temperature = float(temperature)
        self.session_mask = session_mask
        self.negatives = negatives

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, session_mask={self.session_mask}, negatives={self.negatives!r}"

    @staticmethod
    def similarity(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Row-wise cosine ``[B]`` of ``q`` and ``d`` (float32): the similarity the loss compares."""
        return F.cosine_similarity(q.float(), d.float(), dim=-1)

    def forward(
        self,
        q: torch.Tensor,
        d: torch.Tensor,
        label: torch.Tensor,
        session_id: torch.Tensor,
        doc_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean SQDC over the positive rows (a scalar).

        Args:
            q: query representations ``[B, D]``.
            d: document representations ``[B, D]`` (row ``i`` is the doc shown for ``q_i``).
            label: ``[B]`` click labels (int or float).
            session_id: ``[B]`` integer session (query) IDs.
            doc_index: optional ``[B]`` integer document IDs for false-negative masking.
        """
        if q.dim() != 2 or q.shape != d.shape:
            raise ValueError(f"SQDCLoss: q and d must both be [B, D], got {tuple(q.shape)} and {tuple(d.shape)}")
        batch = q.shape[0]
        for name, t in (("label", label), ("session_id", session_id), ("doc_index", doc_index)):
            if t is not None and tuple(t.shape) != (batch,):
                raise ValueError(f"SQDCLoss: {name} must be [B] = [{batch}], got {tuple(t.shape)}")

        pos = label > 0.5  # [B]
        if not bool(pos.any()):
            return (q.sum() + d.sum()) * 0.0
        rows = pos.nonzero(as_tuple=True)[0]  # [P]

        with torch.autocast(device_type=q.device.type, enabled=False):
            dtype = torch.promote_types(q.dtype, torch.float32)  # at least float32
            qn = F.normalize(q.to(dtype), dim=-1)
            dn = F.normalize(d.to(dtype), dim=-1)
            logits = self.temperature * (qn[rows] @ dn.T)  # [P, B]

        not_self = torch.ones(rows.numel(), batch, dtype=torch.bool, device=q.device)
        not_self[torch.arange(rows.numel(), device=q.device), rows] = False  # [P, B]
        drop = torch.zeros_like(not_self)
        if self.session_mask:
            drop |= not_self & (session_id[rows][:, None] == session_id[None, :])
        if doc_index is not None:
            drop |= not_self & (doc_index[rows][:, None] == doc_index[None, :])
        if self.negatives == "positives":
            drop |= not_self & ~pos[None, :]

        positive_logit = logits.gather(1, rows[:, None]).squeeze(1)  # [P]
        denominator = torch.logsumexp(logits.masked_fill(drop, float("-inf")), dim=1)  # [P]
        return (denominator - positive_logit).mean()
