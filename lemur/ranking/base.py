"""The contracts of a ranking backbone and of the ranker's extension points on the ranking side: an extra
logit term and an extra feature token."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from lemur.systems.ranker import LemurRanker


class Backbone(nn.Module, abc.ABC):
    """Feature tokens -> one CTR logit per row.

    Constructed as ``Backbone(num_tokens, token_dim, **init_args)``: the model passes
    the first two (it knows how many feature tokens it makes); a recipe gives the rest.
    ``forward(tokens [B, num_tokens, token_dim]) -> logits [B]``.
    """

    def __init__(self, num_tokens: int, token_dim: int) -> None:
        super().__init__()
        self.num_tokens, self.token_dim = num_tokens, token_dim

    @abc.abstractmethod
    def forward(self, tokens: torch.Tensor) -> torch.Tensor: ...


class LogitTerm(nn.Module, abc.ABC):
    """An extra term added to the backbone's CTR logit by ``LemurRanker`` (``model.logit_terms``).

    ``forward(ranker, batch, content) -> [B]``; the ranker's logit is ``backbone(tokens) + sum of the
    terms``, in training and at evaluation alike. Called with:

    * ``ranker``: the ``LemurRanker`` (e.g. ``ranker.history_vectors(batch, "long")`` gives a history's
      memory-bank vectors ``(table [U, D], index [B, L], mask [B, L])``);
    * ``batch``: the DataModule's batch;
    * ``content``: ``query [B, Dq]`` and ``doc [B, Dd]`` content vectors (detached under
      ``encoder_training.stop_gradient``, like every other ranker input).

    A recipe lists terms by class path::

        model:
          init_args:
            logit_terms:
              - class_path: lemur.contrib.HistorySimilarityLogit
                init_args: {history: long}

    Override :meth:`validate` to check at start-up that the ranker has what the term needs.
    """

    def validate(self, ranker: LemurRanker, key: str) -> None:
        """Raise ``ValueError`` (naming ``key``, e.g. ``model.logit_terms[0]``) if ``ranker`` lacks
        what this term needs. Called at the end of ``LemurRanker.__init__``; the default accepts any."""

    @abc.abstractmethod
    def forward(
        self, ranker: LemurRanker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]
    ) -> torch.Tensor: ...


class FeatureToken(nn.Module, abc.ABC):
    """One extra feature token handed to the backbone by ``LemurRanker`` (``model.extra_tokens``).

    ``forward(ranker, batch, content) -> [B, token_dim]``, with the same arguments as
    :class:`LogitTerm`; the token joins the ID, content and history tokens, so the backbone mixes
    it with them (a ``LogitTerm`` only adds to the final logit). ``token_dim`` is the ranker's
    ``features.token_dim``: a recipe passes it by interpolation,
    ``token_dim: ${model.init_args.features.token_dim}``, and the ranker checks it at start-up.

    Override :meth:`validate` to check at start-up that the ranker has what the token needs.
    """

    token_dim: int

    def validate(self, ranker: LemurRanker, key: str) -> None:
        """Raise ``ValueError`` (naming ``key``, e.g. ``model.extra_tokens[0]``) if ``ranker`` lacks
        what this token needs. Called at the end of ``LemurRanker.__init__``; the default accepts any."""

    @abc.abstractmethod
    def forward(
        self, ranker: LemurRanker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]
    ) -> torch.Tensor: ...
