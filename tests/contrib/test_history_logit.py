"""lemur.contrib.HistorySimilarityLogit (the math): a Python-loop reference, masks, the projection, gradients,
bad settings."""

from __future__ import annotations

import math

import pytest
import torch

from lemur.contrib import HistorySimilarityLogit


def reference(module: HistorySimilarityLogit, target, table, index, mask) -> torch.Tensor:
    out = []
    for b in range(target.shape[0]):
        t = target[b] if module.proj is None else module.proj(target[b])
        items = [table[int(index[b, j])] for j in range(index.shape[1]) if mask[b, j]]
        if not items:
            out.append(torch.tensor(0.0))
            continue
        if module.proj is not None:
            items = [module.proj(v) for v in items]
        total = sum(v / v.norm() for v in items)
        h = total / total.norm()
        out.append(module.scale * torch.dot(t / t.norm(), h))
    return torch.stack(out)


def data(seed: int, batch: int = 5, docs: int = 7, length: int = 6, dim: int = 4):
    g = torch.Generator().manual_seed(seed)
    target, table = torch.randn(batch, dim, generator=g), torch.randn(docs, dim, generator=g)
    index = torch.randint(0, docs, (batch, length), generator=g)
    mask = torch.rand(batch, length, generator=g) > 0.4
    mask[0] = False  # a row without any valid history item
    return target, table, index, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("proj_dim", [None, 3])
def test_matches_the_loop_reference(seed: int, proj_dim) -> None:
    torch.manual_seed(seed)
    module = HistorySimilarityLogit(init_scale=2.5, proj_dim=proj_dim, input_dim=4 if proj_dim else None)
    target, table, index, mask = data(seed)
    out = module.compute(target, table, index, mask)
    assert out.shape == (5,)
    torch.testing.assert_close(out, reference(module, target, table, index, mask))
    assert float(out[0]) == 0.0  # no valid item: no term
    assert float(out.abs().max()) <= 2.5 + 1e-5  # a scaled cosine


def test_padding_never_changes_the_output() -> None:
    module = HistorySimilarityLogit()
    target, table, index, mask = data(3)
    before = module.compute(target, table, index, mask)
    moved = torch.where(mask, index, (index + 3) % table.shape[0])  # masked slots point elsewhere
    torch.testing.assert_close(module.compute(target, table, moved, mask), before)


def test_the_target_the_scale_and_the_projection_get_gradient_and_its_sign_is_fixed_at_start() -> None:
    module = HistorySimilarityLogit(init_scale=1.0, proj_dim=3, input_dim=4)
    target, table, index, mask = data(4)
    target.requires_grad_(True)
    module.compute(target, table, index, mask).sum().backward()
    assert target.grad[1:].abs().sum() > 0 and float(target.grad[0].abs().sum()) == 0.0
    assert module.scale.grad is not None and module.proj.weight.grad.abs().sum() > 0
    # a target equal to the history mean scores +scale, its opposite -scale
    plain = HistorySimilarityLogit(init_scale=1.0)
    table = torch.eye(4)
    index, mask = torch.tensor([[0, 1], [0, 1]]), torch.ones(2, 2, dtype=torch.bool)
    out = plain.compute(torch.tensor([[1.0, 1.0, 0, 0], [-1.0, -1.0, 0, 0]]), table, index, mask)
    torch.testing.assert_close(out, torch.tensor([1.0, -1.0]))


def test_an_empty_history_gives_zeros_connected_to_the_target() -> None:
    target = torch.randn(3, 4, requires_grad=True)
    out = HistorySimilarityLogit().compute(
        target, torch.randn(5, 4), torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 0, dtype=torch.bool)
    )
    assert torch.equal(out, torch.zeros(3)) and out.requires_grad


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"history": "middle"}, "history must be 'long' or 'short'"),
        ({"init_scale": 0.0}, "init_scale must be a positive number"),
        ({"init_scale": -1}, "init_scale must be a positive number"),
        ({"proj_dim": 0, "input_dim": 4}, "proj_dim must be a positive int"),
        ({"proj_dim": 3}, "proj_dim needs input_dim"),
    ],
)
def test_bad_settings_are_named(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        HistorySimilarityLogit(**kwargs)


def test_bad_shapes_are_named() -> None:
    module = HistorySimilarityLogit()
    with pytest.raises(ValueError, match="target \\[B, D\\] and table \\[U, D\\]"):
        module.compute(
            torch.randn(3, 4),
            torch.randn(5, 6),
            torch.zeros(3, 2, dtype=torch.long),
            torch.ones(3, 2, dtype=torch.bool),
        )
    with pytest.raises(ValueError, match="index and mask must both be \\[B, L\\]"):
        module.compute(
            torch.randn(3, 4),
            torch.randn(5, 4),
            torch.zeros(3, 2, dtype=torch.long),
            torch.ones(3, 3, dtype=torch.bool),
        )
    assert math.isclose(float(module.scale), 1.0)
