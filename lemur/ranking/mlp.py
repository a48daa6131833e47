"""DLRM-style ranker: pairwise dot-product interactions of the feature tokens, then an MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lemur.ranking.base import Backbone


class MLPBackbone(Backbone):
    """``tokens [B, T, D] -> [flatten(tokens), <t_i, t_j> for i < j] -> MLP -> logits [B]``.

    The pairwise dot products are DLRM's interaction layer: they hand the MLP the
    query-document (and user-document, ...) matches directly instead of leaving it to
    learn products from concatenated vectors.

    Args:
        num_tokens, token_dim: set by the model.
        hidden_dims: widths of the hidden layers (Linear, LayerNorm, GELU, Dropout each).
        dropout: dropout after each hidden layer.
        dot_interaction: add the T*(T-1)/2 pairwise dot products (DLRM); False = plain MLP.
    """

    def __init__(
        self,
        num_tokens: int,
        token_dim: int,
        hidden_dims: Sequence[int] = (256, 128),
        dropout: float = 0.1,
        dot_interaction: bool = True,
    ) -> None:
        super().__init__(num_tokens, token_dim)
        self.dot_interaction = dot_interaction
        pairs = torch.triu_indices(num_tokens, num_tokens, offset=1)
        self.register_buffer("pairs", pairs, persistent=False)
        width = num_tokens * token_dim + (pairs.shape[1] if dot_interaction else 0)
        layers: list[nn.Module] = []
        for h in hidden_dims:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens.flatten(1)
        if self.dot_interaction:
            gram = tokens @ tokens.transpose(1, 2) / tokens.shape[-1] ** 0.5
            x = torch.cat([x, gram[:, self.pairs[0], self.pairs[1]]], dim=1)
        return self.mlp(x).squeeze(-1)
