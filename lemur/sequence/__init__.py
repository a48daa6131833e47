"""History decoders: ``SequenceDecoder`` and its implementations."""

from lemur.sequence.base import SequenceDecoder
from lemur.sequence.pooling import MeanPoolDecoder

__all__ = ["SequenceDecoder", "MeanPoolDecoder"]
