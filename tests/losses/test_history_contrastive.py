"""HistoryContrastiveLoss: a brute-force reference, masks, gradients and bad settings."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lemur.losses import HistoryContrastiveLoss


def reference(doc, history, mask, label, user, scale, symmetric):
    """Row by row, with Python loops: the loss as its docstring writes it."""
    rows = [i for i in range(len(doc)) if label[i] > 0.5 and mask[i].any()]
    means = {}
    for i in rows:
        items = [F.normalize(history[i, l], dim=0) for l in range(history.shape[1]) if mask[i, l]]
        means[i] = F.normalize(torch.stack(items).sum(0), dim=0)
    cos = lambda a, b: float(torch.dot(F.normalize(a, dim=0), b))

    def direction(score):
        total = 0.0
        for i in rows:
            terms = [scale * score(i, j) for j in rows if j == i or user[j] != user[i]]
            total += -(scale * score(i, i) - math.log(sum(math.exp(t) for t in terms)))
        return total / len(rows)

    forward = direction(lambda i, j: cos(doc[i], means[j]))
    if not symmetric:
        return forward
    backward = direction(lambda i, j: cos(doc[j], means[i]))
    return 0.5 * (forward + backward)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_brute_force_reference(seed: int, symmetric: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    B, L, D = 12, 5, 6
    doc, history = torch.randn(B, D, generator=g), torch.randn(B, L, D, generator=g)
    mask = torch.rand(B, L, generator=g) > 0.4
    mask[3] = False  # a row without history never counts
    label = (torch.rand(B, generator=g) > 0.3).float()
    user = torch.randint(0, 5, (B,), generator=g)  # repeated users: same-user pairs are masked
    loss = HistoryContrastiveLoss(scale=5.0, symmetric=symmetric)(doc, history, mask, label, user)
    assert float(loss) == pytest.approx(reference(doc, history, mask, label, user, 5.0, symmetric), rel=1e-5)


def test_padding_and_non_clicked_rows_do_not_change_the_loss() -> None:
    g = torch.Generator().manual_seed(3)
    B, L, D = 8, 4, 5
    doc, history = torch.randn(B, D, generator=g), torch.randn(B, L, D, generator=g)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[:, -1] = False
    label, user = torch.tensor([1.0, 1, 0, 1, 1, 0, 1, 1]), torch.arange(B)
    loss = HistoryContrastiveLoss()
    base = loss(doc, history, mask, label, user)
    padded = history.clone()
    padded[:, -1] = 1e3 * torch.randn(B, D, generator=g)  # garbage in padded slots
    padded_doc = doc.clone()
    padded_doc[label == 0] = torch.randn(2, D, generator=g)  # non-clicked rows are not used at all
    torch.testing.assert_close(loss(padded_doc, padded, mask, label, user), base)


def test_gradient_reaches_documents_only_and_dims_cuts_the_rest() -> None:
    g = torch.Generator().manual_seed(4)
    doc = torch.randn(6, 8, generator=g, requires_grad=True)
    history = torch.randn(6, 3, 8, generator=g)
    mask, label, user = torch.ones(6, 3, dtype=torch.bool), torch.ones(6), torch.arange(6)
    HistoryContrastiveLoss(dims=4)(doc, history, mask, label, user).backward()
    assert doc.grad[:, :4].abs().sum() > 0
    assert doc.grad[:, 4:].abs().sum() == 0
    doc.grad = None
    HistoryContrastiveLoss(dims=3, skip=2)(doc, history, mask, label, user).backward()
    assert doc.grad[:, 2:5].abs().sum() > 0
    assert doc.grad[:, :2].abs().sum() == 0 and doc.grad[:, 5:].abs().sum() == 0
    doc.grad = None
    HistoryContrastiveLoss(skip=6)(doc, history, mask, label, user).backward()
    assert doc.grad[:, 6:].abs().sum() > 0 and doc.grad[:, :6].abs().sum() == 0


def test_fewer_than_two_usable_rows_give_a_connected_zero() -> None:
    doc = torch.randn(3, 4, requires_grad=True)
    loss = HistoryContrastiveLoss()(doc, torch.randn(3, 2, 4), torch.ones(3, 2, dtype=torch.bool), torch.tensor([1.0, 0, 0]), torch.arange(3))
    assert float(loss) == 0.0
    loss.backward()
    assert doc.grad is not None


@pytest.mark.parametrize("kwargs, field", [({"scale": 0}, "scale"), ({"history": "medium"}, "history"), ({"dims": 0}, "dims"), ({"skip": -1}, "skip")])
def test_bad_settings_are_named(kwargs, field) -> None:
    with pytest.raises(ValueError, match=field):
        HistoryContrastiveLoss(**kwargs)


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="history"):
        HistoryContrastiveLoss()(torch.randn(3, 4), torch.randn(3, 2, 5), torch.ones(3, 2), torch.ones(3), torch.arange(3))
    with pytest.raises(ValueError, match="mask"):
        HistoryContrastiveLoss()(torch.randn(3, 4), torch.randn(3, 2, 4), torch.ones(3, 3), torch.ones(3), torch.arange(3))
