"""The contract of an auxiliary training loss: the ranker's first extension point."""

from __future__ import annotations

import abc
import re
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from lemur.systems.ranker import LemurRanker


def default_name(cls: type, suffix: str) -> str:
    """``CICLoss`` -> ``cic``, ``WordBagReconstructionLoss`` -> ``word_bag_reconstruction`` (``suffix`` stripped)."""
    stem = cls.__name__.removesuffix(suffix) or cls.__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem).lower()


class AuxiliaryLoss(nn.Module, abc.ABC):
    """A weighted extra training loss of ``LemurRanker`` (``model.aux_losses``).

    ``forward(ranker, batch, content) -> []`` (a scalar); the ranker adds ``weight * loss`` to
    ``BCE + sqdc_weight * SQDC`` and logs the unweighted value as ``train/<name>``. Called once per
    training step, after the memory-bank write and the logits, with:

    * ``ranker``: the ``LemurRanker`` (read its components: ``ranker.doc_encoder``, ``ranker.ids``
      for ID embeddings, ``ranker.history_vectors(batch, "long")`` for a history's bank vectors);
    * ``batch``: the DataModule's batch (``label [B]``, ``doc_index [B]``, ``doc_tokens [B, Td]``, ...);
    * ``content``: the step's content vectors, ``query [B, Dq]`` and ``doc [B, Dd]`` (when the
      ranker has those encoders), with their graph: the loss can train the encoders.

    A recipe lists losses by class path::

        model:
          init_args:
            aux_losses:
              - class_path: lemur.losses.CICLoss
                init_args: {weight: 0.1, content_dim: 128, id_dim: 64}

    Override :meth:`validate` to check at start-up that the ranker has what the loss needs.

    Args:
        weight: the loss's weight in the total (>= 0).
        name: the metric name (``train/<name>``); default: the class name in snake case without
            a trailing ``Loss``.
    """

    def __init__(self, weight: float = 1.0, name: str | None = None) -> None:
        super().__init__()
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"{type(self).__name__}: weight must be a number >= 0, got {weight!r}")
        if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_./-]+", name)):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty metric name, got {name!r}")
        self.weight = float(weight)
        self.name = name or default_name(type(self), "Loss")

    def validate(self, ranker: LemurRanker, key: str) -> None:
        """Raise ``ValueError`` (naming ``key``, e.g. ``model.aux_losses[0]``) if ``ranker`` lacks
        what this loss needs. Called at the end of ``LemurRanker.__init__``; the default accepts any."""

    @abc.abstractmethod
    def forward(
        self, ranker: LemurRanker, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]
    ) -> torch.Tensor: ...
