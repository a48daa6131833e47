"""Ranking backbones and the ID/context feature embeddings."""

from lemur.ranking.base import Backbone
from lemur.ranking.features import FeatureConfig, IdFeatures
from lemur.ranking.mlp import MLPBackbone

__all__ = ["Backbone", "MLPBackbone", "FeatureConfig", "IdFeatures"]
