"""Word-bag reconstruction of each document from its vector (not in the LEMUR paper): an ``AuxiliaryLoss`` plug-in.

BCE and SQDC keep in a document vector what predicts clicks on average and what matches queries.
A user's taste for some content that no query expresses (LEMUR-Synth's marker words) predicts
clicks only per user, so it is dropped early and the bank histories cannot carry it
(``docs/findings.md``). This loss makes the vector keep the document's words: a linear decoder predicts,
from the vector, every token of the document's text fields (a softmax over the vocabulary, as
doc2vec's PV-DBOW does), so which words a document holds, rare ones included, stays decodable for
the ranker's history modules to select from.

Hand-written because it is a few lines over ``F.cross_entropy``; no library ships this head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lemur.losses.base import AuxiliaryLoss

if TYPE_CHECKING:
    from lemur.systems.ranker import LemurRanker

BERT_SPECIAL_IDS = (0, 100, 101, 102, 103)  # [PAD], [UNK], [CLS], [SEP], [MASK] of BERT uncased vocabularies


class WordBagReconstructionLoss(AuxiliaryLoss):
    """Mean negative log-likelihood of a document's tokens under ``softmax(W d + b)`` (an ``AuxiliaryLoss``).

    As an auxiliary loss: ``forward(ranker, batch, content) -> []`` reconstructs the batch's target
    documents (``batch["doc_tokens"/"doc_mask"/"doc_types"]``) from ``content["doc"]``, logged as
    ``train/word_bag_reconstruction``. The math alone: ``compute(doc [B, D], tokens [B, T], mask [B, T],
    types [B, T]) -> []``.

    For each row ``i`` with at least one counted token, ``L_i = -mean_{t counted} log p(tokens[i, t] | d_i)``
    with ``p = softmax(decoder(d_i))`` over ``vocab_size`` entries; the loss is the mean of ``L_i``.
    A token counts when ``mask`` is set, its id is not in ``ignore_ids`` (the tokenizer's special
    tokens) and, with ``fields``, its field type is one of them (1 = the first field of
    ``data.tokenizer.fields``, ...). The decoder is this module's own ``Linear(input_dim, vocab_size)``;
    its bias learns the word frequencies, so the vector is pushed to hold what is particular to the document.

    Args:
        input_dim: width of the document vectors (``doc_encoder.out_dim``).
        vocab_size: size of the tokenizer's vocabulary (30522 for the packaged BERT uncased WordPiece).
        fields: field types to reconstruct; None = every text field.
        ignore_ids: token ids never reconstructed (default: BERT's special tokens).
        weight, name: see ``AuxiliaryLoss``.
    """

    def __init__(
        self,
        input_dim: int,
        vocab_size: int = 30522,
        fields: list[int] | None = None,
        ignore_ids: Sequence[int] = BERT_SPECIAL_IDS,
        weight: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name)
        for name, value in (("input_dim", input_dim), ("vocab_size", vocab_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"WordBagReconstructionLoss: {name} must be a positive int, got {value!r}")
        if fields is not None and (
            not fields or any(not isinstance(f, int) or isinstance(f, bool) or f < 1 for f in fields)
        ):
            raise ValueError(
                "WordBagReconstructionLoss: fields must be null or a non-empty list of field types >= 1, "
                f"got {fields!r}"
            )
        self.input_dim, self.vocab_size = input_dim, vocab_size
        self.fields = None if fields is None else [int(f) for f in fields]
        self.register_buffer(
            "ignore_ids", torch.tensor(sorted(set(int(i) for i in ignore_ids)), dtype=torch.long), persistent=False
        )
        self.decoder = nn.Linear(input_dim, vocab_size)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, vocab_size={self.vocab_size}, fields={self.fields}, weight={self.weight}"

    def validate(self, ranker: LemurRanker, key: str) -> None:
        if ranker.doc_encoder is None:
            raise ValueError(
                f"{key}: WordBagReconstructionLoss decodes document-encoder vectors: it needs model.doc_encoder"
            )
        if self.input_dim != ranker.doc_encoder.out_dim:
            raise ValueError(
                f"{key}: WordBagReconstructionLoss input_dim={self.input_dim} must equal "
                f"model.doc_encoder.out_dim={ranker.doc_encoder.out_dim}"
            )

    def forward(
        self, ranker: LemurRanker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The loss of the batch's target documents (a scalar)."""
        return self.compute(content["doc"], batch["doc_tokens"], batch["doc_mask"], batch["doc_types"])

    def compute(self, doc: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """Mean NLL of each document's counted tokens (see the class)."""
        if doc.dim() != 2 or doc.shape[1] != self.input_dim:
            raise ValueError(f"WordBagReconstructionLoss: doc must be [B, {self.input_dim}], got {tuple(doc.shape)}")
        if (
            tokens.dim() != 2
            or tokens.shape[0] != doc.shape[0]
            or mask.shape != tokens.shape
            or types.shape != tokens.shape
        ):
            raise ValueError(
                f"WordBagReconstructionLoss: tokens, mask and types must all be [B, T] with B = {doc.shape[0]}, "
                f"got {tuple(tokens.shape)}, {tuple(mask.shape)}, {tuple(types.shape)}"
            )
        if tokens.numel() and int(tokens.max()) >= self.vocab_size:
            raise ValueError(
                f"WordBagReconstructionLoss: token id {int(tokens.max())} >= vocab_size={self.vocab_size}; "
                "set vocab_size to the tokenizer's vocabulary size"
            )
        counted = mask.bool() & ~torch.isin(tokens, self.ignore_ids)
        if self.fields is not None:
            counted &= torch.isin(types, torch.tensor(self.fields, device=types.device))
        per_doc = counted.sum(1)
        rows = per_doc > 0
        if not rows.any():
            return doc.sum() * 0.0 + self.decoder.weight.sum() * 0.0
        log_p = F.log_softmax(self.decoder(doc[rows]).float(), dim=-1)  # [R, V]
        picked = torch.gather(log_p, 1, tokens[rows].long())  # [R, T]
        nll = -(picked * counted[rows]).sum(1) / per_doc[rows]
        return nll.mean()
