"""A diagnostic document text encoder that *knows* LEMUR-Synth's hidden text taste (not a model to deploy).

The taste probe (``taste_probe.py``) shows that trained document vectors do not hold the users'
text tastes, and the bank's history sequences add nothing measurable on ``small``. Two causes are
possible: the encoders never learn the taste from the click loss at this data size, or the ranker
cannot use a taste even when the history vectors carry it. This encoder separates them: it runs the
recipe's own text encoder and overwrites the last ``n_tastes`` outputs with a fixed, untrainable
code of the document's text taste, read off the OCR marker words (the share of the document's
marker tokens that belong to each taste). The memory bank then stores vectors that carry the taste
exactly, so the histories (mean-pooled bank vectors) and the cosine similarity features can express
it. If bank histories beat no histories with this encoder, the ranker side works and what is
missing is an encoder that learns the taste; if they do not, the ranker side is at fault.

Used by the override ``diagnostics/oracle_taste.yaml`` and the suite ``diagnostics/oracle_taste_suite.yaml``
(class path ``diagnostics.oracle_taste.TasteOracleTextEncoder``, importable from the repository root,
where ``lemur fit`` runs). Only the marker words' token ids come from the data (``synth.json``); the
encoder reads nothing else the model would not see.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from lemur.encoders.base import TextEncoder


class TasteOracleTextEncoder(TextEncoder):
    """``encoder``'s output with its last ``n_tastes`` entries replaced by ``scale`` x the taste code.

    ``forward(tokens [B, T], mask [B, T], types [B, T] | None) -> [B, encoder.out_dim]``; the code of a
    document is the share of its marker tokens per taste (all zeros when it shows none).

    Args:
        encoder: the text encoder to wrap (e.g. the recipe's ``TransformerTextEncoder``).
        synth_json: the dataset's ``synth.json`` (its ``vocabulary.text_taste_markers``).
        scale: size of the code next to the encoder's outputs.
        tokenizer_path: the tokenizer the DataModule uses (None = the packaged all-MiniLM-L6-v2).
    """

    def __init__(
        self, encoder: TextEncoder, synth_json: str, scale: float = 1.0, tokenizer_path: str | None = None
    ) -> None:
        super().__init__()
        path = Path(synth_json)
        if not path.is_file():
            raise FileNotFoundError(
                f"TasteOracleTextEncoder.synth_json: no such file {synth_json!r} (a LEMUR-Synth dataset's synth.json)"
            )
        markers = json.loads(path.read_text())["vocabulary"]["text_taste_markers"]
        from transformers import AutoTokenizer

        from lemur.data.tokenize import default_tokenizer_path

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or default_tokenizer_path())
        taste_of_token = torch.full((len(tokenizer),), -1, dtype=torch.long)
        for taste, words in enumerate(markers):
            for word in words:
                ids = tokenizer.convert_tokens_to_ids([word])
                if ids[0] == tokenizer.unk_token_id:
                    raise ValueError(f"TasteOracleTextEncoder: marker word {word!r} is not one token of the tokenizer")
                taste_of_token[ids[0]] = taste
        if len(markers) >= encoder.out_dim:
            raise ValueError(f"TasteOracleTextEncoder: {len(markers)} tastes do not fit in out_dim={encoder.out_dim}")
        self.encoder, self.n_tastes, self.scale, self.out_dim = encoder, len(markers), float(scale), encoder.out_dim
        self.register_buffer("taste_of_token", taste_of_token, persistent=False)

    def taste_code(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, n_tastes]``: the share of each row's marker tokens that belong to each taste."""
        taste = self.taste_of_token[tokens.clamp(max=len(self.taste_of_token) - 1)].masked_fill(~mask.bool(), -1)
        counts = F.one_hot(taste + 1, self.n_tastes + 1)[..., 1:].sum(1).float()
        return counts / counts.sum(-1, keepdim=True).clamp(min=1.0)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        vectors = self.encoder(tokens, mask, types)
        code = self.scale * self.taste_code(tokens, mask).to(vectors.dtype)
        return torch.cat([vectors[:, : -self.n_tastes], code], dim=-1)
