"""RankMixerBackbone: shapes, the token-mixing permutation, per-token FFN independence, gradients,
bf16 autocast, the input projection when T does not divide D, and naming it in a recipe."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lemur.ranking import Backbone, RankMixerBackbone
from lemur.ranking.rankmixer import PerTokenFFN, RankMixerLayer, token_mix

REPO = Path(__file__).resolve().parents[2]


def test_forward_shape_no_projection_when_t_divides_d() -> None:
    torch.manual_seed(0)
    model = RankMixerBackbone(4, 8, num_layers=2)
    assert isinstance(model, Backbone) and model.input_proj is None
    out = model(torch.randn(3, 4, 8))
    assert out.shape == (3,) and torch.isfinite(out).all()


@pytest.mark.parametrize(("t", "d", "kwargs", "expect"), [
    (3, 8, {}, (3, 9)),                                  # T does not divide D: width rounded up to 9
    (5, 8, {"hidden_dim": 10}, (5, 10)),
    (5, 8, {"num_mix_tokens": 4, "hidden_dim": 12}, (4, 12)),
    (4, 8, {"hidden_dim": 16}, (4, 16)),                 # a different width also projects
])
def test_input_projection_fits_the_mixing_rule(t: int, d: int, kwargs: dict, expect: tuple[int, int]) -> None:
    model = RankMixerBackbone(t, d, num_layers=1, **kwargs)
    assert (model.mix_tokens, model.hidden_dim) == expect
    if expect[0] == t:  # same token count: each token is widened on its own (shared Linear(D -> D'))
        assert model.per_token_proj and (model.input_proj.in_features, model.input_proj.out_features) == (d, expect[1])
    else:  # a different token count: the flattened tokens are re-tokenised
        assert not model.per_token_proj and model.input_proj.in_features == t * d
        assert model.input_proj.out_features == expect[0] * expect[1]
    out = model(torch.randn(3, t, d))
    assert out.shape == (3,) and torch.isfinite(out).all()
    assert model(torch.randn(2, t, d)).shape == (2,)


def test_bad_hidden_dim_fails_clearly() -> None:
    with pytest.raises(ValueError, match="divisible"):
        RankMixerBackbone(3, 8, hidden_dim=10)


def test_token_mix_is_the_hand_computed_permutation() -> None:
    # T = 2 tokens, D = 4, H = 2 heads -> sub-vectors of size 2.
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0],      # token 0 = [a0 | a1] = [1 2 | 3 4]
                       [5.0, 6.0, 7.0, 8.0]]])    # token 1 = [b0 | b1] = [5 6 | 7 8]
    expected = torch.tensor([[[1.0, 2.0, 5.0, 6.0],   # new token 0 = [a0 | b0]
                              [3.0, 4.0, 7.0, 8.0]]])  # new token 1 = [a1 | b1]
    assert torch.equal(token_mix(x, 2), expected)
    # T = 3, D = 6, H = 3: new token h = concat over tokens t of x[t, 2h:2h+2].
    x = torch.arange(18.0).reshape(1, 3, 6)
    expected = torch.stack([torch.cat([x[0, t, 2 * h:2 * h + 2] for t in range(3)]) for h in range(3)])[None]
    mixed = token_mix(x, 3)
    assert torch.equal(mixed, expected)
    # An exact permutation: same multiset of values, nothing lost or duplicated.
    assert torch.equal(mixed.flatten().sort().values, x.flatten().sort().values)
    # H != T changes the token count: [B, T, D] -> [B, H, T*D/H].
    assert token_mix(torch.randn(2, 3, 4), 2).shape == (2, 2, 6)


def test_per_token_ffn_weights_are_per_token() -> None:
    torch.manual_seed(0)
    ffn = PerTokenFFN(num_tokens=3, dim=4, mult=2)
    assert ffn.w1.shape == (3, 4, 8) and ffn.w2.shape == (3, 8, 4)
    x = torch.randn(2, 3, 4)
    base = ffn(x)
    # Each token's output matches its own FFN computed by hand.
    for t in range(3):
        hand = torch.nn.functional.gelu(x[:, t] @ ffn.w1[t] + ffn.b1[t]) @ ffn.w2[t] + ffn.b2[t]
        torch.testing.assert_close(base[:, t], hand)
    # Changing token 1's input changes only token 1's output.
    y = x.clone()
    y[:, 1] += 1.0
    out = ffn(y)
    assert torch.equal(out[:, 0], base[:, 0]) and torch.equal(out[:, 2], base[:, 2])
    assert not torch.allclose(out[:, 1], base[:, 1])
    # The same vector in every token gives different outputs: the weights differ per token.
    same = ffn(torch.randn(1, 1, 4).expand(1, 3, 4))
    assert not torch.allclose(same[:, 0], same[:, 1]) and not torch.allclose(same[:, 1], same[:, 2])


def test_layer_is_post_norm_mix_then_pffn() -> None:
    torch.manual_seed(0)
    layer = RankMixerLayer(num_tokens=2, dim=4, ffn_mult=2)
    x = torch.randn(3, 2, 4)
    s = torch.nn.functional.layer_norm(token_mix(x, 2) + x, (4,))   # default LN params: weight 1, bias 0
    expected = torch.nn.functional.layer_norm(layer.ffn(s) + s, (4,))
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("t", [4, 3])
def test_gradients_reach_every_parameter(t: int) -> None:
    torch.manual_seed(0)
    model = RankMixerBackbone(t, 8, num_layers=2, ffn_mult=2, dropout=0.1)
    model(torch.randn(5, t, 8)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bf16_autocast_cpu() -> None:
    torch.manual_seed(0)
    model = RankMixerBackbone(3, 8, num_layers=2)
    x = torch.randn(4, 3, 8)
    ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    # The head is a Linear, which autocast runs in bf16.
    assert out.shape == (4,) and out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.1)


def test_named_in_a_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["lemur"])  # LightningCLI warns when pytest's own argv is there too
    from lemur.cli import LemurCLI
    from lemur.sequence import LongerDecoder

    cli = LemurCLI(args=["-c", str(REPO / "recipes" / "lemur.yaml"), "-c", str(REPO / "recipes" / "tiny.yaml"),
                         "--trainer.logger", "false",
                         "--model.init_args.backbone", "lemur.ranking.RankMixerBackbone",
                         "--model.init_args.long_history", "lemur.sequence.LongerDecoder"], run=False)
    assert isinstance(cli.model.backbone, RankMixerBackbone)
    assert isinstance(cli.model.histories["long"], LongerDecoder)
