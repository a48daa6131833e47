"""Ranking backbones, extra logit terms and feature tokens, and the ID/context feature embeddings."""

from lemur.ranking.base import Backbone, FeatureToken, LogitTerm
from lemur.ranking.features import FeatureConfig, IdFeatures
from lemur.ranking.mlp import MLPBackbone
from lemur.ranking.rankmixer import RankMixerBackbone

__all__ = ["Backbone", "FeatureToken", "LogitTerm", "MLPBackbone", "RankMixerBackbone", "FeatureConfig", "IdFeatures"]
