"""Auxiliary training losses: SQDC (LEMUR) and CIC (EM3). CTR uses plain BCE."""

from lemur.losses.cic import CICLoss
from lemur.losses.sqdc import SQDCLoss

__all__ = ["SQDCLoss", "CICLoss"]
