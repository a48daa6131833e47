"""BagOfWordsTextEncoder and ConcatTextEncoder: per-field means, padding ignored, concatenation, bad values named."""

from __future__ import annotations

import pytest
import torch

from lemur.encoders import BagOfWordsTextEncoder, ConcatTextEncoder, TextEncoder, TransformerTextEncoder


def test_bag_of_words_is_the_projected_per_field_mean_and_ignores_padding() -> None:
    torch.manual_seed(0)
    enc = BagOfWordsTextEncoder(vocab_size=50, embed_dim=4, num_types=3, out_dim=5, max_len=8)
    tokens = torch.tensor([[1, 7, 8, 9, 3, 0, 0]])
    types = torch.tensor([[0, 1, 1, 2, 2, 0, 0]])
    mask = tokens != 0
    out = enc(tokens, mask, types)
    e = enc.token.weight
    fields = torch.cat([e[1], (e[7] + e[8]) / 2, (e[9] + e[3]) / 2])
    torch.testing.assert_close(out[0], enc.proj(fields))
    junk = enc(torch.tensor([[1, 7, 8, 9, 3, 11, 12]]), mask, torch.tensor([[0, 1, 1, 2, 2, 1, 2]]))
    torch.testing.assert_close(junk, out)  # junk ids and types in the padded slots change nothing
    empty = enc(torch.tensor([[1, 0]]), torch.tensor([[True, False]]), torch.tensor([[0, 0]]))
    torch.testing.assert_close(empty[0], enc.proj(torch.cat([e[1], torch.zeros(8)])))  # an empty field is a zero mean
    assert enc(tokens, mask).shape == (1, 5)  # no types: everything is field 0


def test_bag_of_words_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match="embed_dim must be an integer >= 1"):
        BagOfWordsTextEncoder(embed_dim=0)
    with pytest.raises(ValueError, match="max_len=4"):
        BagOfWordsTextEncoder(vocab_size=20, max_len=4)(torch.ones(1, 6, dtype=torch.long), torch.ones(1, 6, dtype=torch.bool))


def test_concat_joins_the_parts_in_order_and_passes_gradient_to_each() -> None:
    torch.manual_seed(0)
    first = TransformerTextEncoder(vocab_size=50, num_layers=1, hidden_dim=8, num_heads=2, ffn_dim=16, num_types=3, max_len=10, out_dim=6)
    second = BagOfWordsTextEncoder(vocab_size=40, embed_dim=4, num_types=2, out_dim=5, max_len=12)
    enc = ConcatTextEncoder([first, second])
    assert isinstance(enc, TextEncoder) and enc.out_dim == 11
    assert (enc.max_len, enc.num_types, enc.vocab_size) == (10, 2, 40)  # the tightest of the parts
    tokens, mask, types = torch.tensor([[1, 5, 6, 0]]), torch.tensor([[True, True, True, False]]), torch.tensor([[0, 1, 1, 0]])
    out = enc(tokens, mask, types)
    torch.testing.assert_close(out, torch.cat([first(tokens, mask, types), second(tokens, mask, types)], -1))
    out.sum().backward()
    assert first.proj.weight.grad.abs().sum() > 0 and second.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least one"):
        ConcatTextEncoder([])
    with pytest.raises(TypeError, match=r"encoders\[1\] must be a TextEncoder"):
        ConcatTextEncoder([first, torch.nn.Linear(2, 2)])
