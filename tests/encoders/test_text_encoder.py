"""TransformerTextEncoder: CLS and masked-mean pooling ignore padding; mean pooling is the masked mean;
bad values are named."""

from __future__ import annotations

import pytest
import torch

from lemur.encoders import TransformerTextEncoder


def _encoder(pooling: str) -> TransformerTextEncoder:
    torch.manual_seed(0)
    return TransformerTextEncoder(
        num_layers=2, hidden_dim=16, num_heads=2, ffn_dim=32, num_types=3, max_len=12, out_dim=8, pooling=pooling
    ).eval()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_never_changes_the_vector(pooling: str) -> None:
    enc = _encoder(pooling)
    tokens = torch.tensor([[101, 2000, 2001, 102]])
    types = torch.tensor([[0, 1, 1, 2]])
    short = enc(tokens, torch.ones(1, 4, dtype=torch.bool), types)
    padded_tokens = torch.cat([tokens, torch.tensor([[7, 8, 9]])], 1)  # junk ids in the padded slots
    mask = torch.tensor([[True] * 4 + [False] * 3])
    long = enc(padded_tokens, mask, torch.cat([types, torch.ones(1, 3, dtype=torch.long)], 1))
    torch.testing.assert_close(long, short)


def test_mean_pooling_is_the_masked_mean_of_the_outputs() -> None:
    enc = _encoder("mean")
    tokens = torch.tensor([[101, 2000, 2001, 0], [101, 2002, 0, 0]])
    mask = tokens != 0
    hidden = {}
    enc.out_norm.register_forward_hook(lambda module, inputs, output: hidden.setdefault("pooled", inputs[0]))
    out = enc(tokens, mask)
    x = enc.embed_norm(enc.token(tokens) + enc.position(torch.arange(4))[None] + enc.field_type.weight[0])
    x = enc.encoder(x, src_key_padding_mask=~mask)
    expected = torch.stack([x[0, :3].mean(0), x[1, :2].mean(0)])
    torch.testing.assert_close(hidden["pooled"], expected)
    assert out.shape == (2, 8)
    assert not torch.allclose(out, _encoder("cls")(tokens, mask))  # the two poolings differ


def test_bad_pooling_is_named() -> None:
    with pytest.raises(ValueError, match="pooling must be 'cls' or 'mean', got pooling='max'"):
        TransformerTextEncoder(pooling="max")
