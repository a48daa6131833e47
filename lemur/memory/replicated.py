"""The replicated memory bank: every rank holds the whole table (what the paper describes)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lemur.memory.base import MemoryBank, WriteStats

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def last_occurrence(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(unique ids, position of each one's last occurrence in ids)``."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    pos = torch.arange(len(ids), device=ids.device)
    last = torch.full((len(uniq),), -1, dtype=torch.long, device=ids.device).scatter_reduce(
        0, inverse, pos, reduce="amax"
    )
    return uniq, last


def all_gather_rows(ids: torch.Tensor, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every rank's ``(ids [n_r], embeddings [n_r, D])`` in rank order (n_r may differ)."""
    world = dist.get_world_size()
    n = torch.tensor([len(ids)], device=ids.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    width = max(sizes)
    pad = width - len(ids)
    ids_p = F.pad(ids, (0, pad))
    emb_p = F.pad(embeddings, (0, 0, 0, pad))
    all_ids = [torch.empty_like(ids_p) for _ in range(world)]
    all_emb = [torch.empty_like(emb_p) for _ in range(world)]
    dist.all_gather(all_ids, ids_p)
    dist.all_gather(all_emb, emb_p)
    return (torch.cat([t[:s] for t, s in zip(all_ids, sizes)]), torch.cat([t[:s] for t, s in zip(all_emb, sizes)]))


class ReplicatedMemoryBank(MemoryBank):
    """A ``[capacity, dim]`` table on the training device, the same on every rank.

    Per entry it keeps ``written`` (bool), ``last_write`` (training step of the last write,
    -1 = never) and ``reads`` (history lookups since the last write, for refresh schedules;
    counted per rank, summed across ranks when a refresh ranks by them).
    Under DDP the fresh ``(id, embedding)`` pairs of all ranks are all-gathered in ``write``
    and applied in rank order, so the tables stay identical without ever broadcasting them.

    The tensors are deliberately *not* registered buffers: DDP would broadcast every buffer
    from rank 0 at each forward (the whole table, every step). They still follow ``.to()``
    and are saved in / restored from ``state_dict`` (checkpoints) like buffers.

    Args:
        capacity: number of entries; must cover the dataset's documents (checked at fit start).
        dim: embedding size (the document encoder's ``out_dim``; paper: 128).
        dtype: storage type, ``float32`` | ``bfloat16`` | ``float16``; reads return
            whatever ``dtype`` the caller asks for. Bytes per entry: ``dim * itemsize + 17``.
    """

    STATE = ("table", "written_mask", "last_write", "reads")

    def __init__(self, capacity: int, dim: int = 128, dtype: str = "float32") -> None:
        super().__init__()
        if capacity < 1 or dim < 1:
            raise ValueError(f"ReplicatedMemoryBank: capacity and dim must be >= 1, got capacity={capacity}, dim={dim}")
        if dtype not in DTYPES:
            raise ValueError(f"ReplicatedMemoryBank.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.capacity, self.dim, self.dtype = capacity, dim, DTYPES[dtype]
        self.table = torch.zeros(capacity, dim, dtype=self.dtype)
        self.written_mask = torch.zeros(capacity, dtype=torch.bool)
        self.last_write = torch.full((capacity,), -1, dtype=torch.long)
        self.reads = torch.zeros(capacity, dtype=torch.long)

    def extra_repr(self) -> str:
        return f"capacity={self.capacity}, dim={self.dim}, dtype={self.dtype}"

    # ------------------------------------------------------------- module state plumbing
    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for name in self.STATE:
            moved = fn(getattr(self, name))
            setattr(self, name, moved.to(self.dtype) if name == "table" else moved)  # keep the storage dtype
        return self

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name in self.STATE:
            destination[prefix + name] = getattr(self, name)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        ours = {prefix + name for name in self.STATE}
        for name in self.STATE:
            key, current = prefix + name, getattr(self, name)
            if key not in state_dict:
                missing_keys.append(key)
            elif state_dict[key].shape != current.shape:
                error_msgs.append(
                    f"memory bank '{key}': checkpoint shape {tuple(state_dict[key].shape)} != recipe shape "
                    f"{tuple(current.shape)} (capacity/dim changed?)"
                )
            else:
                with torch.no_grad():
                    current.copy_(state_dict[key])
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

    @torch.no_grad()
    def read(
        self, ids: torch.Tensor, dtype: torch.dtype | None = None, count: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        flat = ids.reshape(-1)
        emb = self.table.index_select(0, flat).view(*ids.shape, self.dim)
        valid = self.written_mask.index_select(0, flat).view(ids.shape)
        if count:
            self.reads.index_add_(0, flat, torch.ones_like(flat))
        return (emb if dtype is None else emb.to(dtype)), valid

    @torch.no_grad()
    def count_reads(self, ids: torch.Tensor, times: torch.Tensor) -> None:
        self.reads.index_add_(0, ids.reshape(-1), times.reshape(-1).to(self.reads.dtype))

    @torch.no_grad()
    def written(self, ids: torch.Tensor) -> torch.Tensor:
        return self.written_mask[ids]

    @torch.no_grad()
    def write(self, ids: torch.Tensor, embeddings: torch.Tensor, step: int) -> WriteStats:
        ids = ids.reshape(-1).to(self.table.device)
        embeddings = embeddings.detach().to(self.table.device, self.dtype)
        if embeddings.shape != (len(ids), self.dim):
            raise ValueError(
                f"memory bank write: expected embeddings [{len(ids)}, {self.dim}], got {tuple(embeddings.shape)}"
            )
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ids, embeddings = all_gather_rows(ids, embeddings)
        self._check(ids)
        uniq, last = last_occurrence(ids)
        # index_select / index_copy_ / index_fill_ rather than advanced indexing: ~3x faster on CPU
        # (benchmarks/bank_ops.py); uniq holds no duplicates, so the result is the same.
        fresh = embeddings.index_select(0, last)
        was = self.written_mask.index_select(0, uniq)
        cos = F.cosine_similarity(fresh.float(), self.table.index_select(0, uniq).float(), dim=-1)
        replaced = was.sum()
        staleness = torch.where(
            replaced > 0, (cos * was).sum() / replaced.clamp(min=1), torch.full_like(cos[:1].sum(), float("nan"))
        )
        self.table.index_copy_(0, uniq, fresh)
        self.written_mask.index_fill_(0, uniq, True)
        self.last_write.index_fill_(0, uniq, step)
        self.reads.index_fill_(0, uniq, 0)
        return WriteStats(staleness=staleness, replaced=replaced, new=len(uniq) - replaced)

    @torch.no_grad()
    def refresh_candidates(self, budget: int, policy: str = "stalest") -> torch.Tensor:
        ids = torch.nonzero(self.written_mask).squeeze(1)
        if policy == "stalest":
            key = self.last_write[ids]
            order = torch.sort(key, stable=True).indices  # oldest write first
        elif policy == "most_read":
            reads = self.reads[ids]
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dist.all_reduce(reads)  # read counters are per rank; the choice must be the same on all
            order = torch.sort(reads, descending=True, stable=True).indices
        else:
            raise ValueError(f"memory bank refresh policy must be 'stalest' or 'most_read', got {policy!r}")
        return ids[order[:budget]]

    def num_written(self) -> int:
        return int(self.written_mask.sum())
