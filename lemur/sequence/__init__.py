"""History decoders (``SequenceDecoder`` and its implementations) and the cosine-similarity features."""

from lemur.sequence.base import SequenceDecoder
from lemur.sequence.longer import LongerDecoder
from lemur.sequence.pooling import MeanPoolDecoder
from lemur.sequence.similarity import CosineSimilarityFeatures

__all__ = ["SequenceDecoder", "MeanPoolDecoder", "LongerDecoder", "CosineSimilarityFeatures"]
