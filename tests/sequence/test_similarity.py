"""The similarity module: raw + sorted cosine features of fixed width."""

from __future__ import annotations

import math

import pytest
import torch

from lemur.sequence import CosineSimilarityFeatures


def test_hand_computed_example() -> None:
    target = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[[0.0, 2.0], [3.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, True, False]])
    out = CosineSimilarityFeatures(max_len=4)(target, items, mask)
    r = 1 / math.sqrt(2)
    want = torch.tensor([[0.0, 1.0, r, 0.0, 1.0, r, 0.0, 0.0]])
    assert out.shape == (1, 8)
    assert torch.allclose(out, want, atol=1e-6)


def test_masked_items_zero_and_sorted_last() -> None:
    target = torch.tensor([[1.0, 0.0]])
    # All valid similarities negative: a masked slot (0 raw) must still sort after them.
    items = torch.tensor([[[-1.0, 0.1], [1.0, 0.0], [-1.0, 1.0], [7.0, 0.0]]])
    mask = torch.tensor([[True, False, True, False]])
    out = CosineSimilarityFeatures(max_len=4)(target, items, mask)
    raw, ranked = out[0, :4], out[0, 4:]
    assert raw[1] == 0 and raw[3] == 0
    assert ranked[0] == raw[2] and ranked[1] == raw[0]  # -0.707 > -0.995
    assert ranked[0] < 0 and ranked[1] < 0 and torch.equal(ranked[2:], torch.zeros(2))


def test_nan_in_masked_slot_does_not_leak() -> None:
    target = torch.randn(1, 3, requires_grad=True)
    items = torch.tensor([[[1.0, 2.0, 3.0], [float("nan")] * 3]])
    out = CosineSimilarityFeatures(max_len=2)(target, items, torch.tensor([[True, False]]))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(target.grad).all()


def test_pads_and_truncates_to_max_len() -> None:
    module = CosineSimilarityFeatures(max_len=3)
    assert module.out_dim == 6
    target = torch.randn(2, 4)
    short = module(target, torch.randn(2, 2, 4), torch.ones(2, 2, dtype=torch.bool))
    assert (
        short.shape == (2, 6) and torch.equal(short[:, 2], torch.zeros(2)) and torch.equal(short[:, 5], torch.zeros(2))
    )
    items = torch.randn(2, 5, 4)
    long = module(target, items, torch.ones(2, 5, dtype=torch.bool))
    first3 = module(target, items[:, :3], torch.ones(2, 3, dtype=torch.bool))
    assert long.shape == (2, 6) and torch.equal(long, first3)  # keeps the first (most recent) items


def test_empty_history_is_all_zeros() -> None:
    out = CosineSimilarityFeatures(max_len=2)(
        torch.randn(3, 4), torch.randn(3, 2, 4), torch.zeros(3, 2, dtype=torch.bool)
    )
    assert torch.equal(out, torch.zeros(3, 4))


def test_gradient_to_target_and_caller_can_detach_items() -> None:
    module = CosineSimilarityFeatures(max_len=4)
    target = torch.randn(2, 5, requires_grad=True)
    items = torch.randn(2, 4, 5, requires_grad=True)
    mask = torch.tensor([[True, True, False, True], [True, False, False, False]])
    module(target, items.detach(), mask).sum().backward()
    assert target.grad is not None and target.grad.abs().sum() > 0
    assert items.grad is None
    module(target, items, mask).sum().backward()  # not detached: items get a gradient too
    assert items.grad is not None and items.grad[0, 2].abs().sum() == 0 and items.grad[0, 0].abs().sum() > 0


def test_bad_args_raise() -> None:
    with pytest.raises(ValueError):
        CosineSimilarityFeatures(max_len=0)
    with pytest.raises(ValueError, match="mask"):
        CosineSimilarityFeatures(max_len=2)(torch.randn(1, 3), torch.randn(1, 2, 3), torch.ones(1, 3, dtype=torch.bool))
