"""Data: the on-disk schema and its validator, the LEMUR-Synth generator, histories, tokenisation, the DataModule."""

from lemur.data.datamodule import HistoryConfig, LemurDataModule
from lemur.data.schema import SchemaError, validate_dataset
from lemur.data.tokenize import TokenizerConfig

__all__ = ["LemurDataModule", "HistoryConfig", "TokenizerConfig", "SchemaError", "validate_dataset"]
