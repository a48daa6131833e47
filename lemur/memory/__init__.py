"""The memory bank of document embeddings (see docs/memory_bank.md)."""

from lemur.memory.base import MemoryBank, WriteStats
from lemur.memory.replicated import ReplicatedMemoryBank
from lemur.memory.sharded import ShardedMemoryBank

__all__ = ["MemoryBank", "ReplicatedMemoryBank", "ShardedMemoryBank", "WriteStats"]
