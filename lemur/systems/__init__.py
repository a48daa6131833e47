"""LightningModules: wiring and train/val/test steps only."""

from lemur.systems.base import RankingSystem
from lemur.systems.pretrainer import ContrastivePretrainer
from lemur.systems.ranker import EncoderTraining, LemurRanker, Sampling

__all__ = ["RankingSystem", "LemurRanker", "Sampling", "EncoderTraining", "ContrastivePretrainer"]
