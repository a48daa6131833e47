"""Data: the on-disk schema and its validator, the LEMUR-Synth generator, histories, tokenisation, the DataModule."""

from lemur.data.schema import SchemaError, validate_dataset

__all__ = [
    "LemurDataModule",
    "StreamingDataModule",
    "HistoryConfig",
    "TokenizerConfig",
    "SchemaError",
    "validate_dataset",
]


def __getattr__(name: str):
    # The DataModule imports Lightning (seconds); `lemur data validate` only needs the schema.
    if name in ("LemurDataModule", "HistoryConfig"):
        from lemur.data import datamodule

        return getattr(datamodule, name)
    if name == "StreamingDataModule":
        from lemur.data.streaming import StreamingDataModule

        return StreamingDataModule
    if name == "TokenizerConfig":
        from lemur.data.tokenize import TokenizerConfig

        return TokenizerConfig
    raise AttributeError(f"module 'lemur.data' has no attribute {name!r}")
