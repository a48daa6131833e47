"""The paper's own small bidirectional Transformer text encoder.

Input embedding = token + position + type (field) embeddings; a pre-norm
Transformer encoder (PyTorch SDPA attention); the output at position 0 (the CLS
token) is normalised and projected to ``out_dim`` (``pooling="mean"``: the masked
mean of all outputs instead, not in the paper). Query encoder: 2 layers, one
type. Document encoder: 4 layers, one type per field (+1 for CLS). Hidden size,
heads, dropout and init are paper gaps; the defaults here are small enough for
CPU, and dropout defaults to 0 (on CPU, dropout's random masks cost ~30% of a step).
"""

from __future__ import annotations

import torch
from torch import nn

from lemur.encoders.base import TextEncoder

BERT_VOCAB_SIZE = 30522  # the packaged all-MiniLM-L6-v2 WordPiece vocabulary


class TransformerTextEncoder(TextEncoder):
    """Bidirectional Transformer with CLS pooling (or masked mean pooling).

    Args:
        vocab_size: token vocabulary size (must cover the tokenizer's ids); None = the tokenizer's, which
            ``lemur fit|validate|test|predict`` fills in from ``data.tokenizer`` (else BERT's 30522).
        num_layers, hidden_dim, num_heads, ffn_dim, dropout: the Transformer.
        num_types: distinct type ids (1 for queries; number of fields + 1 for documents).
        max_len: longest input accepted (positions).
        out_dim: size of the returned vector (paper: 128).
        pooling: ``"cls"`` (the paper: the output at position 0) or ``"mean"`` (the mean of the
            outputs at the real, unmasked positions). Not in the paper: mean pooling keeps a direct
            path from every token, e.g. rare words, to the vector, where CLS pooling lets attention
            decide what to keep.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        num_layers: int = 2,
        hidden_dim: int = 64,
        num_heads: int = 4,
        ffn_dim: int = 256,
        num_types: int = 1,
        max_len: int = 128,
        out_dim: int = 128,
        dropout: float = 0.0,
        pooling: str = "cls",
    ) -> None:
        super().__init__()
        vocab_size = BERT_VOCAB_SIZE if vocab_size is None else vocab_size
        sizes = dict(
            vocab_size=vocab_size,
            num_layers=num_layers,
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_types=num_types,
            max_len=max_len,
            out_dim=out_dim,
        )
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"TransformerTextEncoder.{name} must be >= 1, got {name}={value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"TransformerTextEncoder.dropout must be in [0, 1), got dropout={dropout}")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"TransformerTextEncoder.pooling must be 'cls' or 'mean', got pooling={pooling!r}")
        self.pooling = pooling
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        self.out_dim, self.max_len, self.num_types, self.vocab_size = out_dim, max_len, num_types, vocab_size
        self.token = nn.Embedding(vocab_size, hidden_dim, padding_idx=0)
        self.position = nn.Embedding(max_len, hidden_dim)
        self.field_type = nn.Embedding(num_types, hidden_dim)
        self.embed_norm = nn.LayerNorm(hidden_dim)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            hidden_dim, num_heads, ffn_dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.proj = nn.Linear(hidden_dim, out_dim)
        nn.init.normal_(self.token.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)
        nn.init.normal_(self.field_type.weight, std=0.02)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        length = tokens.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"input of {length} tokens exceeds max_len={self.max_len}; raise the encoder's max_len or cut the "
                "fields shorter"
            )
        pos = torch.arange(length, device=tokens.device)
        x = self.token(tokens) + self.position(pos)[None]
        if types is not None:
            x = x + self.field_type(types.clamp(max=self.num_types - 1))
        else:
            x = x + self.field_type.weight[0]
        x = self.drop(self.embed_norm(x))
        x = self.encoder(x, src_key_padding_mask=~mask)
        if self.pooling == "mean":
            weight = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * weight).sum(1) / weight.sum(1).clamp(min=1.0)
        else:
            pooled = x[:, 0]
        return self.proj(self.out_norm(pooled))


def paper_query_encoder(hidden_dim: int = 64, out_dim: int = 128) -> TransformerTextEncoder:
    """The paper's query tower: 2 layers, one type."""
    return TransformerTextEncoder(
        num_layers=2, hidden_dim=hidden_dim, num_heads=4, ffn_dim=4 * hidden_dim, num_types=1, out_dim=out_dim
    )


def paper_document_text_encoder(
    num_fields: int = 4, hidden_dim: int = 64, out_dim: int = 128
) -> TransformerTextEncoder:
    """The paper's document tower: 4 layers over the concatenated fields, one type per field + CLS."""
    return TransformerTextEncoder(
        num_layers=4,
        hidden_dim=hidden_dim,
        num_heads=4,
        ffn_dim=4 * hidden_dim,
        num_types=num_fields + 1,
        out_dim=out_dim,
    )
