"""The sharded memory bank: each rank holds ``1/W`` of the table; reads and writes are routed to owners.

Hand-written on ``torch.distributed`` collectives because no library offers a training-time,
write-by-training embedding cache with this contract (TorchRec's sharded tables are trainable
parameters updated by an optimizer, not a cache overwritten by an encoder's output).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lemur.memory.base import MemoryBank, WriteStats
from lemur.memory.replicated import DTYPES, all_gather_rows, last_occurrence

GATHER_ROWS = 1 << 20
"""Rows per message when shards are gathered for a checkpoint or an export (bounds the transient
device memory of the gather)."""


def _layout() -> tuple[int, int]:
    """``(world size, rank)`` of the default process group, ``(1, 0)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _Route:
    """Where each of a rank's items goes (``owner = id % W``), and how many each rank receives.

    ``order`` sorts the items by owner (stably, so each owner gets them in the sender's order);
    ``send[r]`` / ``recv[r]`` are the item counts to / from rank ``r`` (exchanged once, an
    ``all_to_all_single`` of ``W`` integers).
    """

    def __init__(self, ids: torch.Tensor, world: int) -> None:
        owner = ids % world
        self.order = torch.argsort(owner, stable=True)
        send = torch.bincount(owner, minlength=world)
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send)
        self.send, self.recv = send.tolist(), recv.tolist()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Items (in the sender's order) to their owners; the result is grouped by sender rank."""
        return _exchange(items[self.order], self.send, self.recv)

    def back(self, replies: torch.Tensor) -> torch.Tensor:
        """Owners' replies (one per received item, in the received order) back, in the sender's order."""
        got = _exchange(replies, self.recv, self.send)
        out = torch.empty_like(got)
        out[self.order] = got
        return out


def _exchange(items: torch.Tensor, send: list[int], recv: list[int]) -> torch.Tensor:
    out = items.new_empty((sum(recv), *items.shape[1:]))
    dist.all_to_all_single(out, items.contiguous(), output_split_sizes=recv, input_split_sizes=send)
    return out


class ShardedMemoryBank(MemoryBank):
    """The memory bank partitioned over the ranks of ``torch.distributed``: rank ``r`` of ``W``
    owns the documents with ``id % W == r`` and stores them in a local ``[ceil(capacity / W), dim]``
    table at row ``id // W``. Per-rank memory is ``1/W`` of ``ReplicatedMemoryBank``'s.

    * ``read``: the IDs are de-duplicated, sent to their owners (``all_to_all_single``) and the
      rows come back the same way, so traffic is bounded by the distinct IDs, not ``B x L``.
    * ``write``: ``(id, vector)`` pairs go to their owners; the last occurrence wins, ties broken by
      rank (the higher rank's pair is applied last), exactly as the replicated bank does.
    * ``written``, ``count_reads``, ``refresh_candidates`` (the global top-``budget`` over every
      shard's candidates, identical on all ranks), ``num_written``: collectives over the shards.
    * Checkpoints hold the whole table in document order, gathered on rank 0 in chunks, so they do
      not depend on the world size: resuming on ``W`` ranks is exact, and resuming on another world
      size re-partitions. Rank 0's host memory must hold the whole table while saving.

    Without a process group (one process) it is one shard holding everything. The local table is
    allocated on first use, after Lightning has started the process group, so building the model
    in each process never allocates the whole catalog.

    Args:
        capacity: number of entries (all shards together); must cover the dataset's documents.
        dim: embedding size (the document encoder's ``out_dim``).
        dtype: storage type, ``float32`` | ``bfloat16`` | ``float16``.
    """

    STATE = ("table", "written_mask", "last_write", "reads")

    def __init__(self, capacity: int, dim: int = 128, dtype: str = "float32") -> None:
        super().__init__()
        if capacity < 1 or dim < 1:
            raise ValueError(f"ShardedMemoryBank: capacity and dim must be >= 1, got capacity={capacity}, dim={dim}")
        if dtype not in DTYPES:
            raise ValueError(f"ShardedMemoryBank.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.capacity, self.dim, self.dtype = capacity, dim, DTYPES[dtype]
        self.world: int | None = None  # the layout of the allocated shard (None = not allocated yet)
        self.rank = 0
        self.device = torch.device("cpu")
        self._pending: dict[str, torch.Tensor] | None = None  # a checkpoint's global state, sliced on first use
        self._shard: dict[str, torch.Tensor] = {}  # this rank's table and metadata, allocated on first use

    # The shard's tensors, as attributes (allocated, or re-partitioned, on first access).
    table = property(lambda self: self._local("table"))
    written_mask = property(lambda self: self._local("written_mask"))
    last_write = property(lambda self: self._local("last_write"))
    reads = property(lambda self: self._local("reads"))

    def _local(self, name: str) -> torch.Tensor:
        self._ensure()
        return self._shard[name]

    def extra_repr(self) -> str:
        return f"capacity={self.capacity}, dim={self.dim}, dtype={self.dtype}, shards={self.world or 'not allocated'}"

    # ------------------------------------------------------------- layout
    def _ensure(self) -> None:
        """Allocate (or re-partition into) this rank's shard when the layout is not the current one."""
        world, rank = _layout()
        if (world, rank) == (self.world, self.rank) and self._pending is None:
            return
        if self._pending is None and self._shard and bool(self._shard["written_mask"].any()):
            raise RuntimeError(
                f"ShardedMemoryBank: the process group changed from {self.world} to {world} ranks after entries "
                "were written; save a checkpoint and resume from it to re-partition"
            )
        rows = math.ceil(self.capacity / world)
        self._shard = {
            "table": torch.zeros(rows, self.dim, dtype=self.dtype, device=self.device),
            "written_mask": torch.zeros(rows, dtype=torch.bool, device=self.device),
            "last_write": torch.full((rows,), -1, dtype=torch.long, device=self.device),
            "reads": torch.zeros(rows, dtype=torch.long, device=self.device),
        }
        if self._pending is not None:  # this rank's documents: rank, rank + W, rank + 2W, ...
            for name in self.STATE:
                mine = self._pending[name][rank::world]
                self._shard[name][: len(mine)].copy_(mine.to(self.device))
            self._pending = None
        self.world, self.rank = world, rank

    def local_bytes(self) -> int:
        """Bytes of this rank's shard (table and metadata)."""
        self._ensure()
        return sum(getattr(self, name).nbytes for name in self.STATE)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.device = fn(torch.zeros(1)).device
        for name, value in self._shard.items():
            moved = fn(value)
            self._shard[name] = moved.to(self.dtype) if name == "table" else moved  # keep the storage dtype
        return self

    # ------------------------------------------------------------- checkpoints: the global table
    def _gather(self, name: str) -> torch.Tensor | None:
        """State tensor ``name`` of every shard, in document order, on rank 0's CPU (None on other ranks)."""
        self._ensure()
        local = getattr(self, name)
        if self.world == 1:
            return local[: self.capacity].cpu().clone()
        if local.dtype == torch.bool:  # gloo sends no bool tensors
            out = self._gather_as(local.to(torch.uint8))
            return out.bool() if out is not None else None
        return self._gather_as(local)

    def _gather_as(self, local: torch.Tensor) -> torch.Tensor | None:
        world, rank = self.world, self.rank
        # Point-to-point in chunks: rank 0 receives one owner's slice at a time into a chunk-sized
        # device buffer and interleaves it into the CPU table (row i of owner r is document i * W + r).
        out = torch.empty((self.capacity, *local.shape[1:]), dtype=local.dtype) if rank == 0 else None
        for owner in range(world):
            n = len(range(owner, self.capacity, world))
            for start in range(0, n, GATHER_ROWS):
                stop = min(n, start + GATHER_ROWS)
                if owner == 0 and rank == 0:
                    out[owner + start * world : owner + stop * world : world] = local[start:stop].cpu()
                elif rank == owner:
                    dist.send(local[start:stop].contiguous(), dst=0)
                elif rank == 0:
                    buf = local.new_empty((stop - start, *local.shape[1:]))
                    dist.recv(buf, src=owner)
                    out[owner + start * world : owner + stop * world : world] = buf.cpu()
        return out

    def global_state(self) -> dict[str, torch.Tensor] | None:
        state = {name: self._gather(name) for name in ("table", "written_mask", "last_write")}
        return state if state["table"] is not None else None

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name in self.STATE:  # a collective: Lightning builds the checkpoint on every rank, rank 0 writes it
            value = self._gather(name)
            if value is not None:
                destination[prefix + name] = value

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        ours = {prefix + name for name in self.STATE}
        expected = {"table": (self.capacity, self.dim)} | {n: (self.capacity,) for n in self.STATE[1:]}
        pending = {}
        for name in self.STATE:
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
            elif tuple(state_dict[key].shape) != expected[name]:
                error_msgs.append(
                    f"memory bank '{key}': checkpoint shape {tuple(state_dict[key].shape)} != recipe shape "
                    f"{expected[name]} (capacity/dim changed?)"
                )
            else:
                pending[name] = state_dict[key].to(self.dtype) if name == "table" else state_dict[key]
        if len(pending) == len(self.STATE):
            self._pending, self.world = pending, None  # sliced into this rank's shard on first use
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        unexpected_keys[:] = [k for k in unexpected_keys if k not in ours]

    # ------------------------------------------------------------- the contract
    def _check(self, ids: torch.Tensor) -> None:
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.capacity):
            raise IndexError(
                f"memory bank: document index out of range [0, {self.capacity}) "
                f"(min {int(ids.min())}, max {int(ids.max())}); raise model.memory_bank capacity"
            )

    def _lookup(self, ids: torch.Tensor, rows: bool) -> torch.Tensor:
        """For distinct ``ids``: ``[N, dim + 1]`` (row, then 1/0 for written) or ``[N]`` written flags."""
        self._ensure()
        ids = ids.to(self.device)
        self._check(ids)
        route = _Route(ids, self.world) if self.world > 1 else None
        asked = route.forward(ids) if route else ids
        local = asked // self.world
        flags = self.written_mask.index_select(0, local)
        reply = torch.cat([self.table.index_select(0, local), flags[:, None].to(self.dtype)], 1) if rows else flags
        if not rows and route:
            reply = reply.to(torch.uint8)  # gloo has no bool all_to_all
        out = route.back(reply) if route else reply
        return out if rows else out.bool()

    @torch.no_grad()
    def read(
        self, ids: torch.Tensor, dtype: torch.dtype | None = None, count: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        uniq, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        rows = self._lookup(uniq, rows=True)
        emb = rows[:, : self.dim].index_select(0, inverse).view(*ids.shape, self.dim)
        valid = rows[:, self.dim].bool().index_select(0, inverse).view(ids.shape)
        if count:
            self.count_reads(uniq, torch.bincount(inverse, minlength=len(uniq)))
        return (emb if dtype is None else emb.to(dtype)), valid

    @torch.no_grad()
    def written(self, ids: torch.Tensor) -> torch.Tensor:
        uniq, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        return self._lookup(uniq, rows=False).index_select(0, inverse).view(ids.shape)

    @torch.no_grad()
    def count_reads(self, ids: torch.Tensor, times: torch.Tensor) -> None:
        self._ensure()
        ids, times = ids.reshape(-1).to(self.device), times.reshape(-1).to(self.device, torch.long)
        if self.world > 1:
            route = _Route(ids, self.world)
            ids, times = route.forward(ids), route.forward(times)
        self.reads.index_add_(0, ids // self.world, times)

    @torch.no_grad()
    def write(self, ids: torch.Tensor, embeddings: torch.Tensor, step: int) -> WriteStats:
        self._ensure()
        ids = ids.reshape(-1).to(self.device)
        embeddings = embeddings.detach().to(self.device, self.dtype)
        if embeddings.shape != (len(ids), self.dim):
            raise ValueError(
                f"memory bank write: expected embeddings [{len(ids)}, {self.dim}], got {tuple(embeddings.shape)}"
            )
        self._check(ids)
        if self.world > 1:
            # Send each ID once (this rank's last occurrence); owners receive the pairs grouped by sender
            # rank, so their last occurrence is the replicated bank's rule: ties go to the higher rank.
            keep = torch.sort(last_occurrence(ids)[1]).values
            route = _Route(ids[keep], self.world)
            ids, embeddings = route.forward(ids[keep]), route.forward(embeddings[keep])
        uniq, last = last_occurrence(ids // self.world)
        fresh = embeddings.index_select(0, last)
        was = self.written_mask.index_select(0, uniq)
        cos = F.cosine_similarity(fresh.float(), self.table.index_select(0, uniq).float(), dim=-1)
        totals = torch.stack([(cos * was).sum().double(), was.sum().double(), torch.tensor(len(uniq)).double()])
        self.table.index_copy_(0, uniq, fresh)
        self.written_mask.index_fill_(0, uniq, True)
        self.last_write.index_fill_(0, uniq, step)
        self.reads.index_fill_(0, uniq, 0)
        if self.world > 1:  # the stats are of the whole write, the same on every rank
            dist.all_reduce(totals)
        cos_sum, replaced, seen = totals.unbind()
        staleness = torch.where(replaced > 0, cos_sum / replaced.clamp(min=1), torch.full_like(cos_sum, float("nan")))
        return WriteStats(staleness=staleness.float(), replaced=replaced.long(), new=(seen - replaced).long())

    @torch.no_grad()
    def refresh_candidates(self, budget: int, policy: str = "stalest") -> torch.Tensor:
        if policy not in ("stalest", "most_read"):
            raise ValueError(f"memory bank refresh policy must be 'stalest' or 'most_read', got {policy!r}")
        self._ensure()
        local = torch.nonzero(self.written_mask).squeeze(1)
        key = self.last_write[local] if policy == "stalest" else -self.reads[local]  # ascending = refresh first
        ids = local * self.world + self.rank  # ascending, like the replicated bank's candidates
        top = torch.sort(key, stable=True).indices[:budget]  # only a shard's own top can be in the global top
        ids, key = ids[top], key[top]
        if self.world > 1:
            ids, key = all_gather_rows(ids, key[:, None])
            key = key[:, 0]
        by_id = torch.argsort(ids)  # ties broken by document ID, as in the replicated bank
        ids, key = ids[by_id], key[by_id]
        return ids[torch.sort(key, stable=True).indices[:budget]]

    def num_written(self) -> int:
        self._ensure()
        count = self.written_mask.sum()
        if self.world > 1:
            dist.all_reduce(count)
        return int(count)
