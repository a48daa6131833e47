"""lemur.contrib.WordBagReconstructionLoss (the math): a Python-loop reference, which tokens count, gradients,
bad settings."""

from __future__ import annotations

import pytest
import torch

from lemur.contrib import WordBagReconstructionLoss


def reference(loss: WordBagReconstructionLoss, doc, tokens, mask, types) -> torch.Tensor:
    per_doc = []
    for i in range(doc.shape[0]):
        log_p = torch.log_softmax(loss.decoder(doc[i]), dim=-1)
        picked = [
            log_p[int(t)]
            for t, m, ty in zip(tokens[i], mask[i], types[i])
            if m and int(t) not in loss.ignore_ids.tolist() and (loss.fields is None or int(ty) in loss.fields)
        ]
        if picked:
            per_doc.append(-torch.stack(picked).mean())
    return torch.stack(per_doc).mean()


def data(seed: int, batch: int = 4, length: int = 9, vocab: int = 120, dim: int = 6):
    g = torch.Generator().manual_seed(seed)
    doc = torch.randn(batch, dim, generator=g)
    tokens = torch.randint(0, vocab, (batch, length), generator=g)
    tokens[:, 0] = 101  # [CLS]
    tokens[:, 4] = 102  # [SEP]
    types = torch.tensor([0, 1, 1, 1, 1, 2, 2, 2, 2]).expand(batch, -1).clone()
    mask = torch.rand(batch, length, generator=g) > 0.2
    return doc, tokens, mask, types


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fields", [None, [2]])
def test_matches_the_loop_reference(seed: int, fields) -> None:
    torch.manual_seed(seed)
    loss = WordBagReconstructionLoss(input_dim=6, vocab_size=120, fields=fields)
    doc, tokens, mask, types = data(seed)
    torch.testing.assert_close(loss.compute(doc, tokens, mask, types), reference(loss, doc, tokens, mask, types))


def test_padding_special_tokens_and_other_fields_never_count() -> None:
    torch.manual_seed(0)
    loss = WordBagReconstructionLoss(input_dim=6, vocab_size=120, fields=[1])
    doc, tokens, mask, types = data(5)
    before = loss.compute(doc, tokens, mask, types)
    changed = tokens.clone()
    changed[~mask] = 7  # padding
    changed[:, 5:] = 9  # field 2, not reconstructed
    torch.testing.assert_close(loss.compute(doc, changed, mask, types), before)
    only_special = torch.full_like(tokens, 101)
    out = loss.compute(doc.requires_grad_(True), only_special, mask, types)
    assert float(out) == 0.0 and out.requires_grad  # nothing to reconstruct: a zero still in the graph


def test_a_vector_that_holds_the_words_scores_better_and_gradient_reaches_encoder_and_decoder() -> None:
    torch.manual_seed(0)
    loss = WordBagReconstructionLoss(input_dim=6, vocab_size=120)
    doc, tokens, mask, types = data(1)
    doc.requires_grad_(True)
    value = loss.compute(doc, tokens, mask, types)
    value.backward()
    assert doc.grad.abs().sum() > 0 and loss.decoder.weight.grad.abs().sum() > 0
    optimiser = torch.optim.Adam([doc, *loss.parameters()], lr=0.05)
    for _ in range(200):
        optimiser.zero_grad()
        loss.compute(doc, tokens, mask, types).backward()
        optimiser.step()
    assert float(loss.compute(doc, tokens, mask, types)) < 0.5 * float(
        value
    )  # vectors can be trained to hold their words


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_dim": 0}, "input_dim must be a positive int"),
        ({"input_dim": 4, "vocab_size": -1}, "vocab_size must be a positive int"),
        ({"input_dim": 4, "fields": []}, "fields must be null or a non-empty list"),
        ({"input_dim": 4, "fields": [0]}, "fields must be null or a non-empty list"),
    ],
)
def test_bad_settings_are_named(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        WordBagReconstructionLoss(**kwargs)


def test_bad_shapes_and_token_ids_are_named() -> None:
    loss = WordBagReconstructionLoss(input_dim=6, vocab_size=120)
    doc, tokens, mask, types = data(0)
    with pytest.raises(ValueError, match="doc must be \\[B, 6\\]"):
        loss.compute(torch.randn(4, 5), tokens, mask, types)
    with pytest.raises(ValueError, match="tokens, mask and types must all be \\[B, T\\]"):
        loss.compute(doc, tokens, mask[:, :3], types)
    with pytest.raises(ValueError, match="token id 500 >= vocab_size=120"):
        loss.compute(doc, torch.full_like(tokens, 500), mask, types)
