"""Lightning callbacks, importable by class path from recipes."""

from lemur.callbacks.predictions import ParquetPredictionWriter
from lemur.callbacks.summary import RunSummary

__all__ = ["ParquetPredictionWriter", "RunSummary"]
