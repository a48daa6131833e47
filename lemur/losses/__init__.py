"""Auxiliary training losses: SQDC (LEMUR), CIC (EM3), the history contrastive loss and the word-bag reconstruction. CTR uses plain BCE."""

from lemur.losses.cic import CICLoss
from lemur.losses.history import HistoryContrastiveLoss
from lemur.losses.reconstruction import WordBagReconstructionLoss
from lemur.losses.sqdc import SQDCLoss

__all__ = ["SQDCLoss", "CICLoss", "HistoryContrastiveLoss", "WordBagReconstructionLoss"]
