"""SQDC against a naive double loop of the paper's formula, plus its behaviours."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lemur.losses import SQDCLoss


def naive_sqdc(q, d, label, session, temperature, session_mask=True, negatives="all", doc_index=None) -> torch.Tensor:
    """-log(exp(T s_ii) / sum_j A_ij exp(T s_ij)) averaged over label-1 rows, one scalar at a time."""
    B = q.shape[0]
    losses = []
    for i in range(B):
        if label[i] != 1:
            continue
        num = math.exp(temperature * F.cosine_similarity(q[i], d[i], dim=0).item())
        den = 0.0
        for j in range(B):
            a = 1.0
            if j != i and session_mask and session[i] == session[j]:
                a = 0.0
            if j != i and negatives == "positives" and label[j] != 1:
                a = 0.0
            if j != i and doc_index is not None and doc_index[i] == doc_index[j]:
                a = 0.0
            den += a * math.exp(temperature * F.cosine_similarity(q[i], d[j], dim=0).item())
        losses.append(-math.log(num / den))
    return torch.tensor(sum(losses) / len(losses), dtype=torch.float64)


def random_batch(seed: int = 0, B: int = 12, D: int = 8):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, D, generator=g, dtype=torch.float64)
    d = torch.randn(B, D, generator=g, dtype=torch.float64)
    session = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 5])[:B]
    label = torch.tensor([1, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1])[:B]
    doc = torch.tensor([7, 3, 4, 7, 5, 3, 9, 4, 2, 1, 8, 6])[:B]
    return q, d, label, session, doc


@pytest.mark.parametrize("session_mask", [True, False])
@pytest.mark.parametrize("negatives", ["all", "positives"])
@pytest.mark.parametrize("use_doc", [False, True])
def test_matches_naive_reference(session_mask: bool, negatives: str, use_doc: bool) -> None:
    q, d, label, session, doc = random_batch()
    T = 5.0  # small enough that the naive exp() does not overflow in float64
    loss_fn = SQDCLoss(temperature=T, session_mask=session_mask, negatives=negatives)
    got = loss_fn(q, d, label, session, doc_index=doc if use_doc else None)
    want = naive_sqdc(q, d, label, session, T, session_mask, negatives, doc if use_doc else None)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_float_labels_and_default_temperature_match_reference() -> None:
    q, d, label, session, _ = random_batch(seed=1)
    got = SQDCLoss()(q.float(), d.float(), label.float(), session)
    # T=50 overflows nothing in float64 for |cos| <= 1 (exp(50) ~ 5e21).
    want = naive_sqdc(q, d, label, session, 50.0)
    assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4)


def test_no_session_mask_is_plain_infonce_over_positives() -> None:
    q, d, label, session, _ = random_batch(seed=2)
    T = 10.0
    got = SQDCLoss(temperature=T, session_mask=False)(q, d, label, session)
    logits = T * F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T
    rows = label.nonzero(as_tuple=True)[0]
    want = F.cross_entropy(logits[rows], rows)
    assert torch.allclose(got, want)


def test_same_session_rows_are_excluded_from_the_denominator() -> None:
    # Row 1 (same session as row 0) holds a document identical to q_0's direction:
    # unmasked it dominates the denominator; masked, row 0's loss is ~0.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    label = torch.tensor([1, 0, 0])
    session = torch.tensor([5, 5, 6])
    masked = SQDCLoss(temperature=10.0)(q, d, label, session)
    unmasked = SQDCLoss(temperature=10.0, session_mask=False)(q, d, label, session)
    assert masked.item() == pytest.approx(math.log(1 + math.exp(-20.0)), abs=1e-6)
    assert unmasked.item() == pytest.approx(math.log(2 + math.exp(-20.0)), abs=1e-6)
    # ...and a different session's row stays a negative.
    session_other = torch.tensor([5, 6, 7])
    assert SQDCLoss(temperature=10.0)(q, d, label, session_other).item() == pytest.approx(unmasked.item())


def test_duplicate_document_is_a_negative_unless_doc_index_given() -> None:
    q = torch.tensor([[1.0, 0.0], [0.3, 1.0]])
    d = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # the same document shown in two sessions
    label = torch.tensor([1, 0])
    session = torch.tensor([0, 1])
    loss_fn = SQDCLoss(temperature=50.0)
    assert loss_fn(q, d, label, session).item() == pytest.approx(math.log(2), abs=1e-5)
    assert loss_fn(q, d, label, session, doc_index=torch.tensor([3, 3])).item() == pytest.approx(0.0, abs=1e-6)


def test_no_positive_returns_zero_with_grad() -> None:
    q = torch.randn(4, 3, requires_grad=True)
    d = torch.randn(4, 3, requires_grad=True)
    loss = SQDCLoss()(q, d, torch.zeros(4), torch.arange(4))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(q.grad, torch.zeros_like(q)) and torch.equal(d.grad, torch.zeros_like(d))


def test_gradient_flows_to_q_and_d() -> None:
    q, d, label, session, _ = random_batch(seed=3)
    q, d = q.float().requires_grad_(), d.float().requires_grad_()
    SQDCLoss()(q, d, label, session).backward()
    for g in (q.grad, d.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_numerically_stable_with_large_temperature() -> None:
    q, d, label, session, _ = random_batch(seed=4)
    loss = SQDCLoss(temperature=1e4)(q.float(), d.float(), label, session)
    assert torch.isfinite(loss)


def test_temperature_sharpens_when_positives_are_closest() -> None:
    # Each q_i is nearest to its own d_i: a larger T gives a smaller loss.
    g = torch.Generator().manual_seed(5)
    d = torch.randn(6, 8, generator=g)
    q = d + 0.1 * torch.randn(6, 8, generator=g)
    label, session = torch.ones(6), torch.arange(6)
    losses = [SQDCLoss(temperature=t)(q, d, label, session).item() for t in (1.0, 10.0, 50.0)]
    assert losses[0] > losses[1] > losses[2] >= 0.0


def test_bad_args_raise() -> None:
    for kwargs in ({"temperature": 0.0}, {"temperature": -1.0}, {"negatives": "hard"}, {"session_mask": "yes"}):
        with pytest.raises(ValueError):
            SQDCLoss(**kwargs)
    with pytest.raises(ValueError, match="q and d"):
        SQDCLoss()(torch.randn(3, 2), torch.randn(4, 2), torch.ones(3), torch.arange(3))
    with pytest.raises(ValueError, match="session_id"):
        SQDCLoss()(torch.randn(3, 2), torch.randn(3, 2), torch.ones(3), torch.arange(4))


def test_the_loss_has_no_parameters_and_scores_by_plain_cosine() -> None:
    q, d, *_ = random_batch(seed=2)
    assert not list(SQDCLoss().parameters())
    assert torch.allclose(SQDCLoss.similarity(q, d), F.cosine_similarity(q.float(), d.float(), dim=-1))
