"""Stage 1 of the two-stage baseline: query and document encoders trained with SQDC only."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lemur.encoders.base import TextEncoder
from lemur.encoders.document import DocumentEncoder
from lemur.losses import SQDCLoss
from lemur.systems.base import RankingSystem, _adamw


class ContrastivePretrainer(RankingSystem):
    """Trains ``query_encoder`` and ``doc_encoder`` on SQDC alone (the paper's two-stage
    baseline pretrains "the same Transformer, text and SQDC loss"). Validation/test score
    rows by ``cos(q, d)``, so QAUC shows how well query-document matching alone ranks clicks.
    Its checkpoint feeds ``LemurRanker(encoder_checkpoint=..., freeze_encoders=True)``.
    """

    def __init__(
        self,
        query_encoder: TextEncoder,
        doc_encoder: DocumentEncoder,
        sqdc: SQDCLoss = SQDCLoss(),
        nonfinite_loss: Literal["raise", "skip"] = "raise",
        optimizer: OptimizerCallable = _adamw,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(nonfinite_loss=nonfinite_loss)
        if query_encoder.out_dim != doc_encoder.out_dim:
            raise ValueError(
                f"model.query_encoder.out_dim={query_encoder.out_dim} != "
                f"model.doc_encoder.out_dim={doc_encoder.out_dim}"
            )
        self.save_hyperparameters()
        self.query_encoder, self.doc_encoder, self.sqdc = query_encoder, doc_encoder, sqdc
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_encoder(batch["query_tokens"], batch["query_mask"]), self.doc_encoder(batch)

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q, d = self.encode(batch)
        return self.sqdc.similarity(q, d)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        q, d = self.encode(batch)
        loss = self.sqdc(q, d, batch["label"], batch["session_id"], batch["doc_index"])
        self.log("train/sqdc", loss, prog_bar=True, batch_size=len(q))
        return loss if self.finite_or_skip(loss) else None

    def configure_optimizers(self):
        return self.build_optimizers(self.parameters())
