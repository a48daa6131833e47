"""LightningModules: wiring and train/val/test steps only."""

from lemur.systems.ranker import LemurRanker

__all__ = ["LemurRanker"]
