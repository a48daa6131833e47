"""Training losses: the ``AuxiliaryLoss`` contract, SQDC (LEMUR) and CIC (EM3, an auxiliary loss); CTR uses BCE."""

from lemur.losses.base import AuxiliaryLoss
from lemur.losses.cic import CICLoss
from lemur.losses.sqdc import SQDCLoss

__all__ = ["AuxiliaryLoss", "SQDCLoss", "CICLoss"]
