"""LONGER-style history decoder (arXiv 2505.04421, as LEMUR uses it): one global query token
cross-attends over the history items, layer after layer; no self-attention over the history."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lemur.sequence.base import SequenceDecoder


class LongerLayer(nn.Module):
    """One pre-norm layer: ``q = q + Attn(LN(q), items)``; ``q = q + FFN(LN(q))``.

    ``forward(query [B, D], items [B, L, D] (already normalised), mask [B, L] bool) -> [B, D]``.
    A row with no valid item gets a zero attention read (the query path only).
    """

    def __init__(self, dim: int, num_heads: int = 4, ffn_mult: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"LongerDecoder: dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.query_norm = nn.LayerNorm(dim)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim * ffn_mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * ffn_mult, dim),
            nn.Dropout(dropout),
        )
        self.resid_dropout = nn.Dropout(dropout)

    def attend(self, query: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Multi-head ``sum_j softmax_j(q . k_j / sqrt(d_head)) v_j``, then ``out_proj``: ``[B, D]``."""
        b, n, d = items.shape
        h = self.num_heads
        if n == 0:
            return query.new_zeros(b, d)
        q = self.q_proj(query).view(b, h, 1, d // h)
        k = self.k_proj(items).view(b, n, h, d // h).transpose(1, 2)
        v = self.v_proj(items).view(b, n, h, d // h).transpose(1, 2)
        empty = ~mask.any(1)  # [B]
        # Empty rows attend to everything (finite softmax) and their read is then zeroed: a fully
        # masked softmax row is NaN on some kernels; padded entries of other rows stay masked.
        attn_mask = (mask | empty[:, None])[:, None, None, :]  # [B, 1, 1, L], broadcast over heads
        read = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        read = self.out_proj(read.reshape(b, d))
        return torch.where(empty[:, None], torch.zeros_like(read), read)

    def forward(self, query: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        query = query + self.resid_dropout(self.attend(self.query_norm(query), items, mask))
        return query + self.ffn(self.ffn_norm(query))


class LongerDecoder(SequenceDecoder):
    """``forward(query [B, D], items [B, L, D], mask [B, L] bool) -> [B, D]`` (``out_dim = dim``).

    The LEMUR paper's ``Q_{l+1} = FFN(sum_j softmax_j(Q_l . e_j) e_j)`` with ``Q_1 = query``,
    made a standard multi-head cross-attention block. Choices where the paper is silent (gap):

    * Projections: learned ``q/k/v/out`` Linears (with bias) per layer, ``num_heads`` heads.
    * Scaling: scaled dot product, ``1 / sqrt(dim / num_heads)``.
    * Norms and residuals: pre-norm (``LN`` on the query before attention and before the FFN,
      residual around each); the items get one shared ``LN`` before the first layer (they do
      not change across layers, since there is no self-attention); a final ``LN`` on the output.
    * FFN: ``Linear(D, D*ffn_mult) -> GELU -> Linear(D*ffn_mult, D)``.
    * Only the history items are keys/values (the query does not attend to itself).
    * Empty history (all ``mask`` False): the attention read is zero, so the output is the
      query path only (``LN`` of the query after the FFNs): finite, no NaN.
    * Padding (``mask`` False) never influences the output (boolean ``attn_mask`` into
      ``scaled_dot_product_attention``, which lets GPU use its fused kernels).

    Args:
        dim: item and query size (the ranker's ``token_dim``), also ``out_dim``.
        num_heads: attention heads (must divide ``dim``).
        num_layers: stacked cross-attention + FFN layers.
        ffn_mult: FFN hidden width is ``dim * ffn_mult``.
        dropout: on attention weights, the residual branches and the FFN hidden layer.
    """

    def __init__(
        self, dim: int, num_heads: int = 4, num_layers: int = 1, ffn_mult: int = 2, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if num_layers < 1 or ffn_mult < 1:
            raise ValueError(f"LongerDecoder: need num_layers >= 1 and ffn_mult >= 1 (got {num_layers}, {ffn_mult})")
        self.out_dim = dim
        self.item_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(LongerLayer(dim, num_heads, ffn_mult, dropout) for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        items = self.item_norm(items)
        for layer in self.layers:
            query = layer(query, items, mask)
        return self.out_norm(query)
