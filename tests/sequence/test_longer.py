"""LongerDecoder: shapes, masking invariance, empty histories, the hand-computed single-head formula,
gradients and bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lemur.sequence import LongerDecoder, SequenceDecoder

B, L, D = 3, 5, 8


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    query, items = torch.randn(B, D, generator=g), torch.randn(B, L, D, generator=g)
    mask = torch.tensor([[True, True, True, False, False],
                         [True, False, True, True, True],
                         [False, False, False, False, False]])   # row 2: no valid item
    return query, items, mask


def test_shape_and_out_dim() -> None:
    torch.manual_seed(0)
    dec = LongerDecoder(D, num_heads=2, num_layers=2)
    assert isinstance(dec, SequenceDecoder) and dec.out_dim == D
    out = dec(query=_inputs()[0], items=_inputs()[1], mask=_inputs()[2])
    assert out.shape == (B, D) and torch.isfinite(out).all()


def test_bad_heads_fail_clearly() -> None:
    with pytest.raises(ValueError, match="divisible"):
        LongerDecoder(D, num_heads=3)


@pytest.mark.parametrize("training", [False, True])
def test_padding_does_not_influence_the_output(training: bool) -> None:
    torch.manual_seed(0)
    dec = LongerDecoder(D, num_heads=2, num_layers=2).train(training)   # dropout 0: deterministic in train mode too
    query, items, mask = _inputs()
    ref = dec(query=query, items=items, mask=mask)
    changed = items.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), D) * 100.0
    torch.testing.assert_close(dec(query=query, items=changed, mask=mask), ref)
    # And the valid items do matter.
    moved = items.clone()
    moved[0, 0] += torch.randn(D)   # not a constant shift: the item LayerNorm would erase that
    assert not torch.allclose(dec(query=query, items=moved, mask=mask)[0], ref[0])


def test_empty_history_is_finite_and_is_the_query_path() -> None:
    torch.manual_seed(0)
    dec = LongerDecoder(D, num_heads=2, num_layers=2)
    query, items, mask = _inputs()
    mask = torch.zeros_like(mask)
    out = dec(query=query, items=items, mask=mask)
    assert torch.isfinite(out).all()
    # Zero attention read: each layer is q + FFN(LN(q)), then the final LN.
    q = query
    for layer in dec.layers:
        q = q + layer.ffn(layer.ffn_norm(q))
    torch.testing.assert_close(out, dec.out_norm(q))
    # Gradients stay finite too; a zero-length history works.
    query.requires_grad_(True)
    dec(query=query, items=items, mask=mask).sum().backward()
    assert torch.isfinite(query.grad).all()
    assert torch.isfinite(dec(query=query, items=items[:, :0], mask=mask[:, :0])).all()


def test_single_head_identity_projections_reproduce_the_formula() -> None:
    """One head, one layer, identity q/k/v/out, FFN output zeroed: out = LN(Q + sum_j softmax_j(Q.e_j/sqrt(D)) e_j)."""
    dec = LongerDecoder(D, num_heads=1, num_layers=1)
    layer = dec.layers[0]
    with torch.no_grad():
        for proj in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj):
            proj.weight.copy_(torch.eye(D))
            proj.bias.zero_()
        layer.ffn[-2].weight.zero_()
        layer.ffn[-2].bias.zero_()
    query, items, mask = _inputs(1)
    # Pre-normalised inputs, so the (default weight 1, bias 0) pre-norms leave them (almost) unchanged.
    query, items = F.layer_norm(query, (D,)), F.layer_norm(items, (D,))
    out = dec(query=query, items=items, mask=mask)
    for b in range(B):
        valid = [j for j in range(L) if mask[b, j]]
        if valid:
            e = items[b, valid]                                   # [n, D]
            weights = torch.softmax(e @ query[b] / D ** 0.5, dim=0)
            read = (weights[:, None] * e).sum(0)
        else:
            read = torch.zeros(D)
        expected = F.layer_norm(query[b] + read, (D,))
        torch.testing.assert_close(out[b], expected, atol=1e-4, rtol=1e-4)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    dec = LongerDecoder(D, num_heads=2, num_layers=2, dropout=0.1)
    query, items, mask = _inputs()
    items.requires_grad_(True)
    dec(query=query, items=items, mask=mask).pow(2).sum().backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    # No gradient flows into padding.
    assert torch.equal(items.grad[~mask], torch.zeros_like(items.grad[~mask]))


def test_bf16_autocast_cpu() -> None:
    torch.manual_seed(0)
    dec = LongerDecoder(D, num_heads=2, num_layers=2)
    query, items, mask = _inputs()
    ref = dec(query=query, items=items, mask=mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dec(query=query, items=items, mask=mask)
    # The output is the final LayerNorm, which autocast runs in float32 (on CPU and CUDA).
    assert out.shape == (B, D) and out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, atol=0.1, rtol=0.1)
