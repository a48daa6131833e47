"""What every lemur system shares: ranking metrics on validation/test, predictions, optimizers."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC

from lemur.metrics import GroupedAUC


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)


class RankingSystem(L.LightningModule):
    """Base of the systems: subclasses define ``score(batch) -> [B]`` (higher = more likely
    clicked) and ``training_step``; this class evaluates the scores with AUC, QAUC (per
    session, uniform mean) and GAUC (per user, row-weighted), and writes predictions."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics = nn.ModuleDict({
            split: nn.ModuleDict({"auc": BinaryAUROC(), "qauc": GroupedAUC(weighting="uniform"), "gauc": GroupedAUC(weighting="impressions")})
            for split in ("val", "test")
        })

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def eval_loss(self, scores: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """An optional loss to log on validation/test (None = none)."""
        return None

    def _eval_step(self, batch: dict[str, torch.Tensor], split: str) -> None:
        scores = self.score(batch)
        loss = self.eval_loss(scores, batch)
        if loss is not None:
            self.log(f"{split}/loss", loss, batch_size=len(scores))
        m = self.metrics[split]
        target = batch["label"].long()
        m["auc"].update(scores, target)
        m["qauc"].update(scores, target, batch["session_id"])
        m["gauc"].update(scores, target, batch["user_id"])

    def _eval_epoch_end(self, split: str) -> None:
        for name, metric in self.metrics[split].items():
            self.log(f"{split}/{name}", metric.compute(), prog_bar=name != "gauc")
            metric.reset()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    def predict_step(self, batch, batch_idx):
        keys = ("session_id", "user_id", "doc_id", "label")
        return {"score": self.score(batch).float(), **{k: batch[k] for k in keys}}

    def build_optimizers(self, params):
        """The recipe's optimizer (and scheduler) over ``params`` (tensors or parameter groups);
        subclasses set ``optimizer_factory`` and ``scheduler_factory``."""
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
