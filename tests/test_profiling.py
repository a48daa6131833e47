"""lemur.profiling: FLOPs of known layers, per-component split, parameter counts, state left untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lemur.memory import ReplicatedMemoryBank
from lemur.profiling import count_flops_per_row, count_params


def _sum(model, batch, i):
    return model(batch).sum()


class TwoLinear(nn.Module):
    def __init__(self, d_in: int = 12, hidden: int = 8, d_out: int = 5) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def test_linear_flops_match_2_in_out_per_row() -> None:
    d_in, d_out, batch = 16, 8, 10
    model = nn.Sequential(nn.Linear(d_in, d_out))
    out = count_flops_per_row(model, torch.randn(batch, d_in), step=_sum)
    assert out["rows"] == batch
    assert out["forward"] == 2 * d_in * d_out  # 2 * in * out * batch, per row
    assert out["backward"] == 2 * d_in * d_out  # weight gradient only: the input needs no gradient
    assert out["total"] == 4 * d_in * d_out
    assert out["forward_by_component"] == {"0": 2 * d_in * d_out, "other": 0.0}


def test_backward_counts_input_gradients_and_components_split() -> None:
    d_in, hidden, d_out, batch = 12, 8, 5, 7
    out = count_flops_per_row(TwoLinear(d_in, hidden, d_out), torch.randn(batch, d_in), step=_sum, steps=3)
    fwd = 2 * (d_in * hidden + hidden * d_out)
    assert out["forward"] == fwd
    assert out["backward"] == fwd + 2 * hidden * d_out  # + the gradient into the first layer's output
    assert out["forward_by_component"]["first"] == 2 * d_in * hidden
    assert out["forward_by_component"]["second"] == 2 * hidden * d_out
    assert out["steps"] == 3 and out["per_step_total"] == [out["total"]] * 3


class Attention(nn.Module):
    def forward(self, x):  # x [B, H, S, D]
        return F.scaled_dot_product_attention(x, x, x)


def test_cpu_attention_is_counted() -> None:
    b, h, s, d = 2, 3, 5, 4
    x = torch.randn(b, h, s, d, requires_grad=True)
    out = count_flops_per_row(Attention(), x, step=_sum)
    assert out["forward"] == 4 * h * s * s * d  # q @ k^T and attn @ v, per row
    assert out["backward"] > out["forward"]


def test_count_params_by_component() -> None:
    model = TwoLinear(12, 8, 5)
    model.second.requires_grad_(False)
    counts = count_params(model)
    assert counts == {
        "first": 12 * 8 + 8,
        "second": 8 * 5 + 5,
        "total": 12 * 8 + 8 + 8 * 5 + 5,
        "trainable": 12 * 8 + 8,
    }


class WithBank(nn.Module):
    """A stand-in system: encodes its batch, writes the vectors to its bank (as LemurRanker does)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.memory_bank = ReplicatedMemoryBank(10, 4)

    def training_step(self, batch, i):
        vectors = self.encoder(batch["x"])
        self.memory_bank.write(batch["doc_index"], vectors, step=i + 1)
        return vectors.sum()


def test_model_state_is_left_untouched() -> None:
    model = WithBank()
    model.memory_bank.write(torch.tensor([0]), torch.ones(1, 4), step=0)
    before = {k: v.clone() for k, v in model.memory_bank.state_dict().items()}
    grad = torch.full_like(model.encoder.weight, 3.0)
    model.encoder.weight.grad = grad
    weight = model.encoder.weight.detach().clone()
    batch = {"x": torch.randn(6, 4), "doc_index": torch.tensor([0, 1, 2, 2, 3, 5]), "label": torch.zeros(6)}
    out = count_flops_per_row(model, batch, steps=2)
    assert out["rows"] == 6 and out["forward"] == 2 * 4 * 4
    assert model.encoder.weight.grad is grad and model.encoder.bias.grad is None
    assert torch.equal(model.encoder.weight, weight)
    for k, v in model.memory_bank.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="steps"):
        count_flops_per_row(nn.Linear(2, 2), torch.randn(3, 2), steps=0, step=_sum)
