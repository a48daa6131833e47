"""Ranking metrics: global AUC (torchmetrics' ``BinaryAUROC``) and grouped AUC (QAUC / GAUC)."""

from torchmetrics.classification import BinaryAUROC

from lemur.metrics.grouped_auc import GroupedAUC, Weighting, grouped_auc, per_group_auc

__all__ = ["BinaryAUROC", "GroupedAUC", "Weighting", "grouped_auc", "per_group_auc"]
