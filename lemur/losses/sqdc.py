"""SQDC: the Session-masked Query-to-Document Contrastive loss of LEMUR.

Over the rows ``i`` with label 1::

    L_i = -log( exp(T cos(q_i, d_i)) / sum_j A_ij exp(T cos(q_i, d_j)) )

with ``j`` over the batch and ``A_ij = 0`` when ``i != j`` and rows ``i`` and ``j``
share a session ID (documents shown for the same query are highly correlated, so
they make poor negatives), else 1. ``T`` multiplies the cosine (the paper's best is
``T = 50``). The loss is the mean of ``L_i`` over the positive rows.

Optionally (``head_dim``, not in the paper) the cosine is taken after a small MLP *projection
head* shared by ``q`` and ``d`` (SimCLR's device): the contrastive geometry then lives in the
head, and the encoder outputs that the ranker and the memory bank use need not discard what the
query does not express (e.g. a user's taste for some content).
Optionally (``dims``, not in the paper) the loss compares only the first ``dims`` coordinates of
``q`` and ``d``; the rest of both vectors is shaped by the ranker's loss alone (see
``lemur.encoders.ConcatTextEncoder``).
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
        head_dim: None (the paper): cosine of ``q`` and ``d`` themselves. An int: cosine of
            ``head(q)`` and ``head(d)``, with ``head`` = Linear(input_dim, head_dim) -> ReLU ->
            Linear(head_dim, head_dim), one head shared by both (trained with the loss).
        input_dim: the width ``D`` of ``q`` and ``d`` (used only with ``head_dim``; with ``dims``
            it is the width after the cut, i.e. ``dims``).
        dims: None (the paper): the whole vectors. An int: only ``q[:, :dims]`` and ``d[:, :dims]``
            enter the loss (and the head, if any).

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
        head_dim: int | None = None,
        input_dim: int = 128,
        dims: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            raise ValueError(f"SQDCLoss: temperature must be a positive number (it multiplies the cosine), got {temperature!r}")
        if not isinstance(session_mask, bool):
            raise ValueError(f"SQDCLoss: session_mask must be a bool, got {session_mask!r}")
        if negatives not in _NEGATIVES:
            raise ValueError(f"SQDCLoss: negatives must be one of {_NEGATIVES}, got {negatives!r}")
        for name, value in (("head_dim", head_dim), ("input_dim", input_dim), ("dims", dims)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"SQDCLoss: {name} must be a positive integer{' or null' if name != 'input_dim' else ''}, got {value!r}")
        self.dims = dims
        self.temperature = float(temperature)
        self.session_mask = session_mask
        self.negatives = negatives
        self.input_dim = input_dim
        self.head = (nn.Sequential(nn.Linear(input_dim, head_dim), nn.ReLU(), nn.Linear(head_dim, head_dim))
                     if head_dim is not None else None)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, session_mask={self.session_mask}, negatives={self.negatives!r}"
                + (f", dims={self.dims}" if self.dims is not None else ""))

    def _cut(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims is None:
            return x
        if x.shape[-1] < self.dims:
            raise ValueError(f"SQDCLoss: dims={self.dims} but the vectors have only {x.shape[-1]} coordinates")
        return x[..., : self.dims]

    def similarity(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Row-wise cosine ``[B]`` of ``q`` and ``d`` in the space the loss compares them in (after the cut and the head, if any)."""
        q, d = self._cut(q), self._cut(d)
        if self.head is not None:
            q, d = self.head(q), self.head(d)
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
        q, d = self._cut(q), self._cut(d)
        if self.head is not None:
            if q.shape[1] != self.input_dim:
                raise ValueError(f"SQDCLoss: input_dim={self.input_dim} but q and d are [B, {q.shape[1]}]")
            q, d = self.head(q), self.head(d)
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
