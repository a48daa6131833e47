from torch import nn

from lemur.encoders import TextEncoder


class BagOfWordsEncoder(TextEncoder):
    """Mean of token embeddings. forward(tokens [B,T], mask [B,T], types) -> [B, out_dim].

    ``vocab_size`` stays null in recipes: lemur fills in the tokenizer's size (data.tokenizer)."""

    def __init__(self, vocab_size: int | None = None, dim: int = 32, out_dim: int = 128) -> None:
        super().__init__()
        if vocab_size is None:
            raise ValueError("BagOfWordsEncoder.vocab_size: lemur fills in the tokenizer's size; give it outside lemur")
        self.vocab_size, self.out_dim = vocab_size, out_dim  # vocab_size exposed: lemur checks it against the tokenizer
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, tokens, mask, types=None):
        weights = mask.float()[..., None]
        pooled = (self.embed(tokens) * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.proj(pooled)
