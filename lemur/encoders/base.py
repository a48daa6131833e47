"""The contracts every encoder slot fills. Subclass one, name it in a recipe by class path."""

from __future__ import annotations

import abc

import torch
from torch import nn


class TextEncoder(nn.Module, abc.ABC):
    """Token ids -> one vector per text.

    ``forward(tokens [B, T] int64, mask [B, T] bool, types [B, T] int64 | None) -> [B, out_dim]``.
    ``types`` says which field a token belongs to (0 for CLS and single-field inputs).
    """

    out_dim: int
    pretrained: bool = False
    """True when the weights come from a pretrained checkpoint (not a random init), so freezing the
    encoder without a lemur checkpoint (``model.encoder_checkpoint``) is meaningful."""

    @abc.abstractmethod
    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor: ...


class ImageEncoder(nn.Module, abc.ABC):
    """``forward(images [B, 3, H, W] float) -> [B, out_dim]``."""

    out_dim: int
    pretrained: bool = False
    """True when the weights come from a pretrained checkpoint (not a random init), so freezing the
    encoder without a lemur checkpoint (``model.encoder_checkpoint``) is meaningful."""

    @abc.abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor: ...
