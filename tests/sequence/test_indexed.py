"""``SequenceDecoder.forward_indexed(query, table, index, mask)`` equals ``forward(query, table[index], mask)``."""

from __future__ import annotations

import pytest
import torch

from lemur.sequence import LongerDecoder, MeanPoolDecoder


def _inputs(b: int = 5, length: int = 7, u: int = 4, d: int = 8):
    g = torch.Generator().manual_seed(0)
    table = torch.randn(u, d, generator=g, requires_grad=True)
    index = torch.randint(0, u, (b, length), generator=g)
    mask = torch.rand(b, length, generator=g) > 0.3
    mask[0] = False  # a row with no valid item
    return torch.randn(b, d, generator=g), table, index, mask


@pytest.mark.parametrize("make", [MeanPoolDecoder, lambda d: LongerDecoder(d, num_layers=1, num_heads=2)])
def test_indexed_equals_gathered_in_value_and_gradient(make) -> None:
    query, table, index, mask = _inputs()
    decoder = make(table.shape[1])
    fast = decoder.forward_indexed(query, table, index, mask)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), table)
    slow = decoder(query, table[index], mask)
    (grad_slow,) = torch.autograd.grad(slow.square().sum(), table)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(grad_fast, grad_slow)
    assert torch.isfinite(fast).all()


def test_mean_pool_indexed_ignores_masked_slots_and_handles_empty_histories() -> None:
    query, table, index, mask = _inputs()
    decoder = MeanPoolDecoder(table.shape[1])
    out = decoder.forward_indexed(query, table, index, mask)
    assert torch.equal(out[0], torch.zeros(table.shape[1]))  # all slots masked
    other = index.masked_fill(~mask, 3)  # what sits in a masked slot does not matter
    torch.testing.assert_close(decoder.forward_indexed(query, table, other, mask), out)
    empty = decoder.forward_indexed(query, table, index[:, :0], mask[:, :0])
    assert empty.shape == (5, table.shape[1]) and not empty.any()
