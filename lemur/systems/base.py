"""What every lemur system shares: ranking metrics on validation/test, predictions, optimizers."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import SumMetric
from torchmetrics.classification import BinaryAUROC

from lemur.metrics import GroupedAUC


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)


NONFINITE_POLICIES = ("raise", "skip")


class RankingSystem(L.LightningModule):
    """Base of the systems: subclasses define ``score(batch) -> [B]`` (higher = more likely
    clicked) and ``training_step``; this class evaluates the scores with AUC, QAUC (per
    session, uniform mean) and GAUC (per user, row-weighted), and writes predictions.

    ``nonfinite_loss`` says what a training step with a NaN/inf loss (or NaN/inf document
    vectors about to enter the memory bank) does: ``raise`` stops training with an error naming
    the step; ``skip`` drops the step (no backward, no optimizer step, no bank write) and
    counts it in ``train/nonfinite_steps``. Subclasses pass their ``training_step`` tensors
    through :meth:`finite_or_skip`."""

    def __init__(self, nonfinite_loss: Literal["raise", "skip"] = "raise") -> None:
        super().__init__()
        if nonfinite_loss not in NONFINITE_POLICIES:
            raise ValueError(f"model.nonfinite_loss must be one of {list(NONFINITE_POLICIES)}, got {nonfinite_loss!r}")
        self.nonfinite_loss = nonfinite_loss
        self.nonfinite_steps = 0
        self.metrics = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {
                        "auc": BinaryAUROC(),
                        "qauc": GroupedAUC(weighting="uniform"),
                        "gauc": GroupedAUC(weighting="impressions"),
                    }
                )
                for split in ("val", "test")
            }
        )
        # rows and clicks per split: AUC is undefined (logged as NaN, noted in undefined_metrics) with one label
        self.label_counts = nn.ModuleDict({
            split: nn.ModuleDict({"rows": SumMetric(), "pos": SumMetric()}) for split in ("val", "test")
        })
        self.undefined_metrics: dict[str, str] = {}
        """``{split: why}`` for the splits whose AUC was undefined in the last evaluation (the run summary shows it)."""
        # AUC on the rows whose document was published that day (new content: what an ID model
        # cannot know), logged as <split>/auc_new when those rows hold both labels, and their share.
        self.new_doc_metrics = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {"auc": BinaryAUROC(), "rows": SumMetric(), "new": SumMetric(), "new_pos": SumMetric()}
                )
                for split in ("val", "test")
            }
        )

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def finite_or_skip(self, value: torch.Tensor, what: str = "loss") -> bool:
        """True when ``value`` is all finite. Otherwise apply ``nonfinite_loss``: raise a
        ``FloatingPointError``, or count the step and return False (the caller returns None,
        which makes Lightning skip backward and the optimizer step). Costs one device sync."""
        finite = bool(torch.isfinite(value.detach()).all())
        if self._trainer is not None and self.trainer.world_size > 1:  # every rank must skip together
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return True
        step = self.global_step if self._trainer is not None else 0
        if self.nonfinite_loss == "raise":
            raise FloatingPointError(
                f"non-finite training {what} at global step {step}; stopping (set "
                "model.init_args.nonfinite_loss: skip to skip such steps and count them)"
            )
        self.nonfinite_steps += 1
        if self.nonfinite_steps == 1:
            rank_zero_warn(
                f"non-finite training {what} at global step {step}: step skipped "
                "(model.nonfinite_loss: skip); further skips are counted in train/nonfinite_steps"
            )
        self.log("train/nonfinite_steps", float(self.nonfinite_steps), on_step=True, on_epoch=False, batch_size=1)
        return False

    def eval_loss(self, scores: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """An optional loss to log on validation/test (None = none)."""
        return None

    def _eval_step(self, batch: dict[str, torch.Tensor], split: str) -> dict[str, torch.Tensor]:
        scores = self.score(batch)
        loss = self.eval_loss(scores, batch)
        if loss is not None:
            self.log(f"{split}/loss", loss, batch_size=len(scores))
        m = self.metrics[split]
        target = batch["label"].long()
        m["auc"].update(scores, target)
        counts = self.label_counts[split]
        counts["rows"].update(torch.tensor(float(len(target)), device=scores.device))
        counts["pos"].update(target.sum().float())
        m["qauc"].update(scores, target, batch["session_id"])
        m["gauc"].update(scores, target, batch["user_id"])
        if "is_new_doc" in batch:
            new, n = batch["is_new_doc"].bool(), self.new_doc_metrics[split]
            n["rows"].update(torch.tensor(float(len(target)), device=scores.device))
            n["new"].update(new.sum().float())
            n["new_pos"].update(target[new].sum().float())
            if new.any():
                n["auc"].update(scores[new], target[new])
        rows = {"score": scores.detach().float(), "label": target}
        return rows | {k: batch[k] for k in ("session_id", "user_id", "doc_id", "is_new_doc") if k in batch}

    def _eval_epoch_end(self, split: str) -> None:
        counts = self.label_counts[split]
        rows, pos = (float(counts[k].compute()) if counts[k].update_count else 0.0 for k in ("rows", "pos"))
        defined = 0 < pos < rows
        if not defined and not (self._trainer is not None and self.trainer.sanity_checking):
            self.undefined_metrics[split] = self._one_class_note(split, int(rows), int(pos))
            rank_zero_warn(self.undefined_metrics[split])
        elif defined:
            self.undefined_metrics.pop(split, None)
        for name, metric in self.metrics[split].items():
            # torchmetrics' AUROC returns 0.0 (with a warning) for one label; AUC is undefined there
            value = metric.compute() if defined or name != "auc" else torch.tensor(float("nan"), device=self.device)
            self.log(f"{split}/{name}", value, prog_bar=name != "gauc")
            metric.reset()
        for metric in counts.values():
            metric.reset()
        n = self.new_doc_metrics[split]
        if n["rows"].update_count:
            rows, new, pos = n["rows"].compute(), n["new"].compute(), n["new_pos"].compute()
            self.log(f"{split}/new_share", new / rows.clamp(min=1))
            if 0 < pos < new:  # both labels among new-document rows: their AUC is defined
                self.log(f"{split}/auc_new", n["auc"].compute())
        for metric in n.values():
            metric.reset()

    def _one_class_note(self, split: str, rows: int, pos: int) -> str:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        days = (getattr(datamodule, "days", None) or {}).get(split)
        where = f"the {split} split" + (f" (days {list(days)})" if days else "")
        label = "no row" if not rows else f"all {rows} rows have label {1 if pos else 0}"
        return (f"{split}/auc, {split}/qauc and {split}/gauc are undefined (NaN): {where}: {label}; AUC needs "
                "clicks and non-clicks")

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx):
        """Updates the test metrics; returns the batch's scored rows (``RunSummary`` can save them)."""
        return self._eval_step(batch, "test")

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
