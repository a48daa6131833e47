"""CIC: symmetric content-ID InfoNCE against a naive reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lemur.losses import CICLoss


def naive_cic(c, e, temperature, doc_index=None) -> float:
    """Mean of the content->ID and ID->content -log softmax of the diagonal, with loops."""
    B = c.shape[0]
    sim = [[F.cosine_similarity(c[i], e[j], dim=0).item() / temperature for j in range(B)] for i in range(B)]

    def keep(i: int, j: int) -> bool:
        return i == j or doc_index is None or doc_index[i] != doc_index[j]

    c2e = [-sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in range(B) if keep(i, j))) for i in range(B)]
    e2c = [-sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in range(B) if keep(i, j))) for j in range(B)]
    return 0.5 * (sum(c2e) / B + sum(e2c) / B)


def test_matches_naive_reference_same_dims() -> None:
    g = torch.Generator().manual_seed(0)
    c, e = torch.randn(7, 6, generator=g, dtype=torch.float64), torch.randn(7, 6, generator=g, dtype=torch.float64)
    loss_fn = CICLoss(content_dim=6, id_dim=6, temperature=0.5)
    assert loss_fn.compute(c, e).item() == pytest.approx(naive_cic(c, e, 0.5), abs=1e-5)


def test_matches_naive_reference_with_projection_and_duplicates() -> None:
    torch.manual_seed(1)
    loss_fn = CICLoss(content_dim=10, id_dim=4, dim=5, temperature=0.2)
    assert isinstance(loss_fn.content_proj, torch.nn.Linear) and loss_fn.content_proj.out_features == 5
    c, e = torch.randn(6, 10), torch.randn(6, 4)
    doc = torch.tensor([0, 1, 0, 2, 1, 3])
    with torch.no_grad():
        pc, pe = loss_fn.content_proj(c), loss_fn.id_proj(e)
    for idx in (None, doc):
        assert loss_fn.compute(c, e, doc_index=idx).item() == pytest.approx(
            naive_cic(pc.double(), pe.double(), 0.2, idx), abs=1e-4
        )


def test_symmetric() -> None:
    g = torch.Generator().manual_seed(2)
    c, e = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    loss_fn = CICLoss(content_dim=3, id_dim=3)
    assert loss_fn.compute(c, e).item() == pytest.approx(loss_fn.compute(e, c).item(), rel=1e-5)


def test_false_negatives_masked() -> None:
    # Rows 0 and 1 are the same document with identical vectors: as a negative it
    # costs log 2 per direction; masked by doc_index the loss is ~0.
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    e = c.clone()
    loss_fn = CICLoss(content_dim=2, id_dim=2, temperature=0.01)
    assert loss_fn.compute(c, e).item() == pytest.approx(2 * math.log(2) / 3, abs=1e-4)
    assert loss_fn.compute(c, e, doc_index=torch.tensor([4, 4, 9])).item() == pytest.approx(0.0, abs=1e-4)


def test_gradients_reach_inputs_and_projections() -> None:
    loss_fn = CICLoss(content_dim=8, id_dim=3, dim=4)
    c, e = torch.randn(5, 8, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    loss_fn.compute(c, e).backward()
    for t in (c.grad, e.grad, loss_fn.content_proj.weight.grad, loss_fn.id_proj.weight.grad):
        assert t is not None and torch.isfinite(t).all() and t.abs().sum() > 0


def test_bad_args_raise() -> None:
    for kwargs in (
        {"content_dim": 0, "id_dim": 3},
        {"content_dim": 3, "id_dim": 3, "dim": -1},
        {"content_dim": 3, "id_dim": 3, "temperature": 0.0},
    ):
        with pytest.raises(ValueError):
            CICLoss(**kwargs)
    with pytest.raises(ValueError, match="dims"):
        CICLoss(content_dim=3, id_dim=3).compute(torch.randn(2, 4), torch.randn(2, 3))


def test_weight_and_name_of_the_auxiliary_loss() -> None:
    assert CICLoss(content_dim=3, id_dim=3).name == "cic" and CICLoss(content_dim=3, id_dim=3).weight == 1.0
    assert CICLoss(content_dim=3, id_dim=3, weight=0.1, name="cic_b").name == "cic_b"
    for kwargs in ({"weight": -0.1}, {"weight": True}, {"name": ""}, {"name": "a b"}):
        with pytest.raises(ValueError, match="weight|name"):
            CICLoss(content_dim=3, id_dim=3, **kwargs)
