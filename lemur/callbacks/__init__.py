"""Lightning callbacks, importable by class path from recipes."""

from lemur.callbacks.memory_bank import MemoryBankCallback
from lemur.callbacks.predictions import ParquetPredictionWriter
from lemur.callbacks.resume import LemurCheckpoint
from lemur.callbacks.streaming import StreamingReport
from lemur.callbacks.summary import RunSummary

__all__ = ["LemurCheckpoint", "MemoryBankCallback", "ParquetPredictionWriter", "RunSummary", "StreamingReport"]
