"""Ranking backbones and the ID/context feature embeddings."""

from lemur.ranking.base import Backbone
from lemur.ranking.features import FeatureConfig, IdFeatures
from lemur.ranking.mlp import MLPBackbone
from lemur.ranking.rankmixer import RankMixerBackbone

__all__ = ["Backbone", "MLPBackbone", "RankMixerBackbone", "FeatureConfig", "IdFeatures"]
