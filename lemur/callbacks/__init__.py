"""Lightning callbacks, importable by class path from recipes."""

from lemur.callbacks.summary import RunSummary

__all__ = ["RunSummary"]
