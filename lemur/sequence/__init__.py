"""History decoders: ``SequenceDecoder`` and its implementations."""

from lemur.sequence.base import SequenceDecoder
from lemur.sequence.longer import LongerDecoder
from lemur.sequence.pooling import MeanPoolDecoder
from lemur.sequence.similarity import CosineSimilarityFeatures, HistorySimilarityLogit

__all__ = ["SequenceDecoder", "MeanPoolDecoder", "LongerDecoder", "CosineSimilarityFeatures", "HistorySimilarityLogit"]
