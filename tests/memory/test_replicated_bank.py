"""ReplicatedMemoryBank: read/write semantics, duplicates, never-written IDs, state round trip."""

from __future__ import annotations

import io

import pytest
import torch

from lemur.memory import ReplicatedMemoryBank
from lemur.memory.replicated import last_occurrence


def test_never_written_entries_are_invalid_not_silently_used() -> None:
    bank = ReplicatedMemoryBank(capacity=10, dim=4)
    emb, valid = bank.read(torch.tensor([[0, 3], [9, 3]]))
    assert emb.shape == (2, 2, 4) and not valid.any()
    bank.write(torch.tensor([3]), torch.ones(1, 4), step=5)
    emb, valid = bank.read(torch.tensor([[0, 3], [9, 3]]))
    assert valid.tolist() == [[False, True], [False, True]]
    assert torch.equal(emb[0, 1], torch.ones(4)) and torch.equal(emb[0, 0], torch.zeros(4))
    assert bank.last_write[3] == 5 and bank.last_write[0] == -1 and bank.num_written() == 1


def test_duplicates_are_written_once_last_occurrence_wins() -> None:
    bank = ReplicatedMemoryBank(capacity=8, dim=2)
    ids = torch.tensor([4, 1, 4, 4, 1])
    emb = torch.arange(10, dtype=torch.float32).view(5, 2)
    stats = bank.write(ids, emb, step=1)
    assert int(stats.new) == 2 and int(stats.replaced) == 0 and torch.isnan(stats.staleness)
    assert torch.equal(bank.table[4], emb[3]) and torch.equal(bank.table[1], emb[4])
    uniq, last = last_occurrence(ids)
    assert uniq.tolist() == [1, 4] and last.tolist() == [4, 3]


def test_write_replaces_only_matching_ids_and_reports_staleness() -> None:
    bank = ReplicatedMemoryBank(capacity=6, dim=2)
    bank.write(torch.tensor([0, 1, 2]), torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), step=0)
    before = bank.table.clone()
    stats = bank.write(torch.tensor([1, 5]), torch.tensor([[1.0, 0.0], [2.0, 2.0]]), step=1)
    # id 1 moved from (0,1) to (1,0): cosine 0; id 5 is new
    assert int(stats.replaced) == 1 and int(stats.new) == 1
    assert float(stats.staleness) == pytest.approx(0.0)
    assert torch.equal(bank.table[[0, 2]], before[[0, 2]])          # untouched
    assert torch.equal(bank.table[1], torch.tensor([1.0, 0.0]))
    assert bank.written(torch.tensor([0, 1, 2, 3, 4, 5])).tolist() == [True, True, True, False, False, True]


def test_reads_carry_no_gradient_and_writes_detach() -> None:
    bank = ReplicatedMemoryBank(capacity=4, dim=3)
    x = torch.randn(2, 3, requires_grad=True)
    bank.write(torch.tensor([0, 1]), x * 2, step=0)
    emb, _ = bank.read(torch.tensor([0, 1]))
    assert not emb.requires_grad and not bank.table.requires_grad


def test_out_of_range_ids_name_the_capacity() -> None:
    bank = ReplicatedMemoryBank(capacity=4, dim=3)
    with pytest.raises(IndexError, match="capacity"):
        bank.write(torch.tensor([4]), torch.zeros(1, 3), step=0)
    with pytest.raises(ValueError, match="dtype"):
        ReplicatedMemoryBank(capacity=4, dtype="int8")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_state_dict_round_trip_is_bit_exact(dtype: str) -> None:
    bank = ReplicatedMemoryBank(capacity=50, dim=8, dtype=dtype)
    bank.write(torch.randint(0, 50, (30,)), torch.randn(30, 8), step=7)
    bank.read(torch.randint(0, 50, (5, 6)), count=True)
    buf = io.BytesIO()
    torch.save(torch.nn.Sequential(bank).state_dict(), buf)
    buf.seek(0)
    other = torch.nn.Sequential(ReplicatedMemoryBank(capacity=50, dim=8, dtype=dtype))
    result = other.load_state_dict(torch.load(buf))
    assert not result.missing_keys and not result.unexpected_keys
    for name in ReplicatedMemoryBank.STATE:
        assert torch.equal(getattr(other[0], name), getattr(bank, name)), name
    assert other[0].table.dtype == bank.table.dtype


def test_load_rejects_a_bank_of_another_shape() -> None:
    state = torch.nn.Sequential(ReplicatedMemoryBank(capacity=5, dim=4)).state_dict()
    with pytest.raises(RuntimeError, match="capacity/dim changed"):
        torch.nn.Sequential(ReplicatedMemoryBank(capacity=6, dim=4)).load_state_dict(state)


def test_bank_tensors_are_not_buffers_but_follow_to() -> None:
    # DDP broadcasts buffers every forward; the bank must not be one (it syncs by all-gather).
    bank = ReplicatedMemoryBank(capacity=5, dim=4, dtype="bfloat16")
    assert list(bank.buffers()) == []
    bank.to(torch.float64)
    assert bank.table.dtype == torch.bfloat16 and bank.last_write.dtype == torch.long  # storage dtype is kept


def test_refresh_candidates_orders_by_policy() -> None:
    bank = ReplicatedMemoryBank(capacity=6, dim=2)
    for step, i in enumerate([3, 1, 4]):
        bank.write(torch.tensor([i]), torch.ones(1, 2), step=step)
    assert bank.refresh_candidates(2, "stalest").tolist() == [3, 1]
    bank.read(torch.tensor([4, 4, 1]), count=True)
    assert bank.refresh_candidates(3, "most_read").tolist() == [4, 1, 3]
    with pytest.raises(ValueError, match="policy"):
        bank.refresh_candidates(1, "random")
