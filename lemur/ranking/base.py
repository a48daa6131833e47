"""The contract of a ranking backbone."""

from __future__ import annotations

import abc

import torch
from torch import nn


class Backbone(nn.Module, abc.ABC):
    """Feature tokens -> one CTR logit per row.

    Constructed as ``Backbone(num_tokens, token_dim, **init_args)``: the model passes
    the first two (it knows how many feature tokens it makes); a recipe gives the rest.
    ``forward(tokens [B, num_tokens, token_dim]) -> logits [B]``.
    """

    def __init__(self, num_tokens: int, token_dim: int) -> None:
        super().__init__()
        self.num_tokens, self.token_dim = num_tokens, token_dim

    @abc.abstractmethod
    def forward(self, tokens: torch.Tensor) -> torch.Tensor: ...
