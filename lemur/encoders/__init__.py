"""Encoders of raw content: text (own Transformer), image, and the multimodal document encoder."""

from lemur.encoders.base import ImageEncoder, TextEncoder
from lemur.encoders.document import DocumentEncoder
from lemur.encoders.huggingface import HFTextEncoder
from lemur.encoders.image import TimmImageEncoder
from lemur.encoders.text import TransformerTextEncoder, paper_document_text_encoder, paper_query_encoder

__all__ = [
    "TextEncoder",
    "ImageEncoder",
    "DocumentEncoder",
    "HFTextEncoder",
    "TimmImageEncoder",
    "TransformerTextEncoder",
    "paper_query_encoder",
    "paper_document_text_encoder",
]
