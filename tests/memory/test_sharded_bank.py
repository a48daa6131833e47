"""ShardedMemoryBank against ReplicatedMemoryBank fed the same writes: 1, 2 and 4 processes (gloo, CPU)."""

from __future__ import annotations

import math
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lemur.memory import ReplicatedMemoryBank, ShardedMemoryBank

CAPACITY, DIM, STEPS = 203, 8, 12


def _write_batch(step: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A rank's writes at one step: duplicates within and across ranks, and no writes at all on one rank."""
    if world > 1 and step % world == rank:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, DIM)
    g = torch.Generator().manual_seed(1000 * step + rank)
    n = int(torch.randint(1, 20, (1,), generator=g))
    ids = torch.randint(0, CAPACITY // 2, (n,), generator=g)  # the upper half is never written
    ids[: n // 3] = torch.arange(n // 3) + step  # the same IDs on every rank this step
    return ids, torch.randn(n, DIM, generator=g)


def _read_ids(step: int, rank: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7 + 1000 * step + rank)
    return torch.randint(0, CAPACITY, (5, 9), generator=g)


def _compare(tmp: str, world: int, rank: int, dtype: str) -> None:
    sharded = ShardedMemoryBank(CAPACITY, DIM, dtype=dtype)
    replicated = ReplicatedMemoryBank(CAPACITY, DIM, dtype=dtype)
    for step in range(STEPS):
        ids, emb = _write_batch(step, rank, world)
        got, want = sharded.write(ids, emb, step), replicated.write(ids, emb, step)
        assert int(got.replaced) == int(want.replaced) and int(got.new) == int(want.new), step
        torch.testing.assert_close(got.staleness, want.staleness, equal_nan=True)
        read = _read_ids(step, rank)
        for a, b in zip(sharded.read(read, count=True), replicated.read(read, count=True)):
            assert torch.equal(a, b), step
        assert torch.equal(sharded.written(read), replicated.written(read))
        times = torch.arange(read.numel()) % 3
        sharded.count_reads(read.reshape(-1), times)
        replicated.count_reads(read.reshape(-1), times)
        for policy in ("stalest", "most_read"):
            for budget in (0, 3, 50, CAPACITY):
                assert torch.equal(
                    sharded.refresh_candidates(budget, policy), replicated.refresh_candidates(budget, policy)
                ), (step, policy, budget)
        assert sharded.num_written() == replicated.num_written()
    # empty reads and writes on every rank
    assert sharded.read(torch.zeros(0, 4, dtype=torch.long))[0].shape == (0, 4, DIM)
    assert int(sharded.write(torch.zeros(0, dtype=torch.long), torch.zeros(0, DIM), STEPS).new) == 0

    # per-rank memory: 1/W of the replicated bank
    rows = math.ceil(CAPACITY / world)
    replicated_bytes = sum(getattr(replicated, n).nbytes for n in replicated.STATE)
    assert sharded.local_bytes() == rows * replicated_bytes // CAPACITY

    # the gathered state (export) and the checkpoint state are the replicated bank's, in document order
    full = sharded.global_state()
    state = sharded.state_dict()
    if rank == 0:
        for name in ("table", "written_mask", "last_write"):
            assert torch.equal(full[name], getattr(replicated, name)), name
        reads = replicated.reads.clone()
        if world > 1:  # the replicated bank counts reads per rank
            dist.reduce(reads, dst=0)
        assert torch.equal(state["reads"], reads)
        torch.save({"sharded": state, "replicated": replicated.state_dict()}, Path(tmp) / f"state-{world}.pt")
    else:
        assert full is None and "table" not in state
        if world > 1:
            dist.reduce(replicated.reads.clone(), dst=0)
    if world > 1:
        dist.barrier()
    # resume at the same world size: a fresh bank loaded from rank 0's checkpoint reads the same
    again = ShardedMemoryBank(CAPACITY, DIM, dtype=dtype)
    again.load_state_dict(torch.load(Path(tmp) / f"state-{world}.pt")["sharded"])
    read = _read_ids(STEPS, rank)
    for a, b in zip(again.read(read), replicated.read(read)):
        assert torch.equal(a, b)
    for name in ("written_mask", "last_write", "reads", "table"):
        assert torch.equal(getattr(again, name), getattr(sharded, name)), name


def _worker(rank: int, world: int, tmp: str, dtype: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    try:
        _compare(tmp, world, rank, dtype)
    except BaseException:
        Path(tmp, f"error-{rank}.txt").write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path: Path, world: int, dtype: str = "float32") -> None:
    try:
        mp.spawn(_worker, args=(world, str(tmp_path), dtype), nprocs=world, join=True)
    except Exception as err:
        errors = "\n".join(p.read_text() for p in sorted(tmp_path.glob("error-*.txt")))
        pytest.fail(f"{err}\n{errors}")


def test_one_process_is_one_shard_holding_everything(tmp_path: Path) -> None:
    _compare(str(tmp_path), world=1, rank=0, dtype="float32")


@pytest.mark.parametrize("world", [2, 4])
def test_sharded_reads_writes_and_refresh_match_the_replicated_bank(tmp_path: Path, world: int) -> None:
    _spawn(tmp_path, world)
    # a checkpoint saved on `world` ranks resumes in one process: re-partitioned, same entries
    saved = torch.load(tmp_path / f"state-{world}.pt")
    one = ShardedMemoryBank(CAPACITY, DIM)
    one.load_state_dict(saved["sharded"])
    replicated = ReplicatedMemoryBank(CAPACITY, DIM)
    replicated.load_state_dict(saved["replicated"])
    for name in ("table", "written_mask", "last_write"):
        assert torch.equal(getattr(one, name), getattr(replicated, name)), name


def test_bfloat16_storage_on_two_ranks(tmp_path: Path) -> None:
    _spawn(tmp_path, 2, dtype="bfloat16")


def test_a_checkpoint_of_another_capacity_is_refused_by_name() -> None:
    bank = ShardedMemoryBank(10, 4)
    bank.write(torch.tensor([1]), torch.ones(1, 4), step=0)
    other = ShardedMemoryBank(12, 4)
    with pytest.raises(RuntimeError, match=r"memory bank 'table'.*capacity/dim changed"):
        other.load_state_dict(bank.state_dict())


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="capacity and dim"):
        ShardedMemoryBank(0, 4)
    with pytest.raises(ValueError, match="dtype"):
        ShardedMemoryBank(4, 4, dtype="int8")
    with pytest.raises(IndexError, match="capacity"):
        ShardedMemoryBank(4, 2).write(torch.tensor([4]), torch.zeros(1, 2), step=0)
