"""DLRM-style MLP ranker: flatten the feature tokens, then an MLP to one logit."""

from __future__ import annotations

import torch
from torch import nn

from lemur.ranking.base import Backbone


class MLPBackbone(Backbone):
    """``tokens [B, T, D] -> flatten -> (Linear, LayerNorm, GELU, Dropout)* -> Linear -> [B]``.

    Args:
        num_tokens, token_dim: set by the model.
        hidden_dims: widths of the hidden layers.
        dropout: dropout after each hidden layer.
    """

    def __init__(self, num_tokens: int, token_dim: int, hidden_dims: list[int] = [512, 256, 128], dropout: float = 0.1) -> None:
        super().__init__(num_tokens, token_dim)
        layers: list[nn.Module] = []
        width = num_tokens * token_dim
        for h in hidden_dims:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens.flatten(1)).squeeze(-1)
