"""The memory bank of document embeddings (see docs/memory_bank.md)."""

from lemur.memory.base import MemoryBank, WriteStats
from lemur.memory.replicated import ReplicatedMemoryBank

__all__ = ["MemoryBank", "ReplicatedMemoryBank", "WriteStats"]
