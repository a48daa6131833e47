"""Auxiliary training losses: SQDC (LEMUR), CIC (EM3) and the history contrastive loss. CTR uses plain BCE."""

from lemur.losses.cic import CICLoss
from lemur.losses.history import HistoryContrastiveLoss
from lemur.losses.sqdc import SQDCLoss

__all__ = ["SQDCLoss", "CICLoss", "HistoryContrastiveLoss"]
