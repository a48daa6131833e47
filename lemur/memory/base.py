"""The contract of a memory bank: one embedding per document, filled by training itself."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class WriteStats:
    """What one ``write`` changed (tensors, so reading them never forces a device sync)."""

    staleness: torch.Tensor
    """Mean cosine between the fresh embeddings and the entries they replaced (NaN when no
    written entry was replaced). 1 = the cache was still exact; the paper sees ~0.95."""
    replaced: torch.Tensor
    """Entries that were already written and got overwritten."""
    new: torch.Tensor
    """Entries written for the first time."""


class MemoryBank(nn.Module, abc.ABC):
    """One ``dim``-vector per document, keyed by the dense document index ``0..capacity-1``.

    * ``read(ids [*]) -> (embeddings [*, dim], valid [*] bool)``: no gradient; entries never
      written are ``valid = False`` (and zero), so decoders and the similarity module mask them.
    * ``write(ids [N], embeddings [N, dim], step) -> WriteStats``: detached; a duplicate ID is
      written once (its last occurrence). Under ``torch.distributed`` an implementation must
      keep every rank's view consistent (the replicated bank all-gathers the fresh pairs; a
      sharded one would route each pair to the rank that owns the ID). ``write`` is then a
      collective: every rank calls it every training step, with N = 0 if it has nothing.
    * ``written(ids) -> bool``, ``refresh_candidates(budget, policy)`` for refresh schedules.
    * ``global_state()``: the whole table in document order (export, tests). A bank whose entries
      live on several ranks (``ShardedMemoryBank``) makes ``read``, ``written``, ``count_reads``,
      ``refresh_candidates``, ``num_written`` and ``global_state`` collectives too: every rank calls
      them at the same points, which the ranker's steps and ``MemoryBankCallback`` do.

    The bank is module state: it is saved in checkpoints and restored on resume.
    """

    capacity: int
    dim: int

    @abc.abstractmethod
    def read(
        self, ids: torch.Tensor, dtype: torch.dtype | None = None, count: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and valid mask of ``ids``; ``count`` adds the lookups to the read counters."""

    def count_reads(self, ids: torch.Tensor, times: torch.Tensor) -> None:
        """Add ``times[i]`` history lookups to entry ``ids[i]`` (for the ``most_read`` refresh).

        Default: not tracked.
        """

    @abc.abstractmethod
    def write(self, ids: torch.Tensor, embeddings: torch.Tensor, step: int) -> WriteStats: ...

    @abc.abstractmethod
    def written(self, ids: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def refresh_candidates(self, budget: int, policy: str) -> torch.Tensor:
        """Up to ``budget`` written IDs to re-encode: ``"stalest"`` (oldest write first) or
        ``"most_read"`` (most history lookups since their last write first). Identical on all ranks."""

    @abc.abstractmethod
    def num_written(self) -> int: ...

    def global_state(self) -> dict[str, torch.Tensor] | None:
        """``table [capacity, dim]``, ``written_mask [capacity]``, ``last_write [capacity]`` in document
        order, for export. A sharded bank gathers its shards on rank 0 (other ranks get None).

        Default: the bank's own ``table`` / ``written_mask`` / ``last_write`` attributes."""
        try:
            return {name: getattr(self, name) for name in ("table", "written_mask", "last_write")}
        except AttributeError as err:
            raise NotImplementedError(
                f"{type(self).__name__} has no table/written_mask/last_write: override MemoryBank.global_state"
            ) from err
