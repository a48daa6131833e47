"""Unstable plug-ins that are not in the LEMUR paper. Their API may change or go without notice.

Each piece here uses only the ranker's public extension points, exactly as a user's own plug-in
would, so they double as examples of writing one:

* ``AuxiliaryLoss`` (``lemur.losses``, ``model.aux_losses``): :class:`WordBagReconstructionLoss`;
* ``LogitTerm`` (``lemur.ranking``, ``model.logit_terms``): :class:`HistorySimilarityLogit`,
  :class:`IdBiasLogit`, :class:`PopularityPriorLogit`;
* ``FeatureToken`` (``lemur.ranking``, ``model.extra_tokens``): :class:`ImpressionHistoryToken`.

Recipes that use them live under ``experiments/<topic>/``, never under ``recipes/``; the measured
findings are in ``docs/findings.md``.
"""

from lemur.contrib.history_logit import HistorySimilarityLogit
from lemur.contrib.id_bias import IdBiasLogit
from lemur.contrib.impression_history import ImpressionHistoryToken
from lemur.contrib.popularity_prior import PopularityPriorLogit
from lemur.contrib.reconstruction import WordBagReconstructionLoss

__all__ = [
    "HistorySimilarityLogit",
    "IdBiasLogit",
    "ImpressionHistoryToken",
    "PopularityPriorLogit",
    "WordBagReconstructionLoss",
]
