"""RankMixer (arXiv 2507.15551): parameter-free multi-head token mixing + per-token FFNs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lemur.ranking.base import Backbone


def token_mix(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """RankMixer's multi-head token mixing: ``[B, T, D] -> [B, H, T * D / H]``, no parameters.

    Each token ``x_t`` is split into ``H`` sub-vectors ``x_t^1 .. x_t^H`` of size ``D / H``;
    new token ``h`` is the concatenation ``[x_1^h, x_2^h, ..., x_T^h]``. With ``H = T``
    (as in the paper) the shape is preserved and the op is a fixed permutation of the
    ``T * H`` sub-vectors.
    """
    b, t, d = x.shape
    if d % num_heads:
        raise ValueError(f"token_mix: token width {d} is not divisible by num_heads {num_heads}")
    return x.reshape(b, t, num_heads, d // num_heads).transpose(1, 2).reshape(b, num_heads, t * d // num_heads)


class PerTokenFFN(nn.Module):
    """RankMixer's PFFN: token ``t`` has its own 2-layer GELU FFN. ``[B, T, D] -> [B, T, D]``.

    Vectorised with einsum over weights ``w1 [T, D, D*mult]`` and ``w2 [T, D*mult, D]``
    (no Python loop over tokens). Each token's weights are initialised like an
    ``nn.Linear`` of the same shape.
    """

    def __init__(self, num_tokens: int, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = dim * mult
        self.w1 = nn.Parameter(torch.empty(num_tokens, dim, hidden))
        self.b1 = nn.Parameter(torch.empty(num_tokens, hidden))
        self.w2 = nn.Parameter(torch.empty(num_tokens, hidden, dim))
        self.b2 = nn.Parameter(torch.empty(num_tokens, dim))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
        for w, b in ((self.w1, self.b1), (self.w2, self.b2)):
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("btd,tdh->bth", x, self.w1) + self.b1
        h = self.dropout(F.gelu(h))
        return self.dropout(torch.einsum("bth,thd->btd", h, self.w2) + self.b2)


class RankMixerLayer(nn.Module):
    """One RankMixer block, post-norm as in the paper. ``[B, T, D] -> [B, T, D]`` (needs ``T | D``).

    ``x = LN(token_mix(x, H=T) + x)``; ``x = LN(PFFN(x) + x)``.
    """

    def __init__(self, num_tokens: int, dim: int, ffn_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_tokens:
            raise ValueError(f"RankMixerLayer: width {dim} must be divisible by the token count {num_tokens} (H = T)")
        self.num_tokens = num_tokens
        self.mix_norm = nn.LayerNorm(dim)
        self.ffn = PerTokenFFN(num_tokens, dim, ffn_mult, dropout)
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix_norm(token_mix(x, self.num_tokens) + x)
        return self.ffn_norm(self.ffn(x) + x)


class RankMixerBackbone(Backbone):
    """RankMixer ranker.

    ``tokens [B, T, D] -> (project) [B, T', D'] -> layers -> mean over tokens -> Linear -> logits [B]``.

    Choices where the papers leave the config open (gap):

    * Heads: ``H = T'`` (the paper's choice), so token mixing keeps the shape; it needs
      ``D' % T' == 0``.
    * Fitting the mixing rule: ``T' = num_mix_tokens`` (default ``T``) and ``D' = hidden_dim``
      (default: ``D`` rounded up to the next multiple of ``T'``). When ``(T', D') == (T, D)``
      and ``T | D`` the input tokens go in as they are. When only the width changes
      (``T' == T``), one ``Linear(D -> D')`` shared by the tokens widens each token on its own:
      an earlier flat ``Linear(T*D -> T*D')`` over all tokens at once kept LEMUR's 9-token
      model (bank histories + similarity, 64-d) at ID-only quality on LEMUR-Synth small (test
      AUC 0.606, 3 seeds, vs 0.696, 1 seed, for 72-d tokens fed in as they are; README "Reproducing the paper").
      When the token count changes, one ``Linear(T*D -> T'*D')`` over the flattened tokens
      re-tokenises them (in the spirit of the paper's tokenizer, which projects the
      concatenated feature embeddings into T tokens). An explicit ``hidden_dim`` not
      divisible by ``T'`` is an error, not silently rounded.
    * Norms: post-norm (as in the paper), one ``LayerNorm(D')`` per sub-layer shared by all
      tokens; dense per-token FFNs (GELU, ``D' * ffn_mult`` hidden), not the Sparse-MoE
      variant of the paper's largest models.
    * Output: mean over the ``T'`` tokens, then ``Linear(D' -> 1)``.

    Args:
        num_tokens, token_dim: set by the model (``T``, ``D``).
        num_layers: RankMixer blocks.
        hidden_dim: token width ``D'`` inside the mixer (must be divisible by ``T'``); None = auto.
        num_mix_tokens: token count ``T'`` inside the mixer (= heads); None = ``num_tokens``.
        ffn_mult: per-token FFN hidden width is ``D' * ffn_mult``.
        dropout: in the per-token FFNs (hidden and output).
    """

    def __init__(
        self,
        num_tokens: int,
        token_dim: int,
        num_layers: int = 2,
        hidden_dim: int | None = None,
        num_mix_tokens: int | None = None,
        ffn_mult: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(num_tokens, token_dim)
        t = num_mix_tokens if num_mix_tokens is not None else num_tokens
        if t < 1 or num_layers < 0 or ffn_mult < 1:
            raise ValueError(
                f"RankMixerBackbone: need num_mix_tokens >= 1, num_layers >= 0, ffn_mult >= 1 "
                f"(got {t}, {num_layers}, {ffn_mult})"
            )
        if hidden_dim is None:
            hidden_dim = -(-token_dim // t) * t
        elif hidden_dim % t:
            raise ValueError(
                f"RankMixerBackbone: hidden_dim {hidden_dim} must be divisible by the mixer's token count {t} "
                f"(heads = tokens); e.g. hidden_dim={-(-hidden_dim // t) * t}"
            )
        self.mix_tokens, self.hidden_dim = t, hidden_dim
        self.per_token_proj = t == num_tokens
        if (t, hidden_dim) == (num_tokens, token_dim):
            self.input_proj = None
        elif self.per_token_proj:
            self.input_proj = nn.Linear(token_dim, hidden_dim)
        else:
            self.input_proj = nn.Linear(num_tokens * token_dim, t * hidden_dim)
        self.layers = nn.ModuleList(RankMixerLayer(t, hidden_dim, ffn_mult, dropout) for _ in range(num_layers))
        self.head = nn.Linear(hidden_dim, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens
        if self.input_proj is not None and self.per_token_proj:
            x = self.input_proj(tokens)
        elif self.input_proj is not None:
            x = self.input_proj(tokens.flatten(1)).unflatten(1, (self.mix_tokens, self.hidden_dim))
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean(1)).squeeze(-1)
