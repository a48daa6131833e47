"""The LightningModule: wires encoders, history decoders, features and backbone; defines the steps.

Data flow of one row (see DESIGN.md)::

    doc fields --doc_encoder--> d ┐
    query text --query_encoder-> q ├-> feature tokens [B, T, token_dim] --backbone--> logit --> BCE
    IDs + context --IdFeatures--> ┤            + lambda * SQDC(q, d)
    history IDs --embed--> items --short/long decoder(global token)--> ┘
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lemur.encoders.base import TextEncoder
from lemur.encoders.document import DocumentEncoder
from lemur.losses import SQDCLoss
from lemur.ranking.base import Backbone
from lemur.ranking.features import FeatureConfig, IdFeatures
from lemur.sequence.base import SequenceDecoder
from lemur.systems.base import RankingSystem, _adamw


def load_encoders(model: nn.Module, path: str) -> None:
    """Copy the ``query_encoder.*`` and ``doc_encoder.*`` weights of checkpoint ``path`` into ``model``."""
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"model.encoder_checkpoint: no such file {path!r}")
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    for name in ("query_encoder", "doc_encoder"):
        module = getattr(model, name)
        if module is None:
            continue
        part = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        if not part:
            raise ValueError(f"model.encoder_checkpoint: {path} holds no '{name}.*' weights")
        try:
            module.load_state_dict(part)
        except RuntimeError as err:
            raise ValueError(f"model.encoder_checkpoint: {path}: '{name}' does not match the recipe's {name} ({err})") from err


class LemurRanker(RankingSystem):
    """CTR ranker over ID features, optional query/document encoders and history decoders.

    Args:
        backbone: ``Backbone`` class (+ init_args in the recipe); built as
            ``backbone(num_tokens, token_dim)`` once the token count is known.
        features: ID/context embedding sizes and the token width.
        query_encoder: text encoder of the query, or None (no query token).
        doc_encoder: multimodal document encoder, or None (an ID-only model).
        short_history, long_history: ``SequenceDecoder`` classes built as ``decoder(token_dim)``,
            or None to drop that sequence.
        sqdc, sqdc_weight: the query-to-document contrastive loss and its weight lambda in
            ``L = BCE + lambda * SQDC`` (a paper gap; 0.1 by default). Needs both encoders.
        stop_gradient: feed the ranker detached query/document vectors, so only SQDC trains
            the encoders (the paper's "stop-gradient" ablation, Table 5).
        freeze_encoders: keep the encoders fixed (no gradient, eval mode): the second stage of
            the two-stage baseline.
        encoder_checkpoint: a checkpoint (e.g. of ``ContrastivePretrainer``, stage 1) whose
            ``query_encoder.*`` / ``doc_encoder.*`` weights are loaded when fit starts.
        encoder_lr, encoder_weight_decay: learning rate / weight decay of the encoder
            parameters (a second optimizer parameter group); None = the optimizer's own.
        compile: ``torch.compile`` the encoders and the backbone (in place; checkpoints keep
            their keys).
        optimizer, lr_scheduler: LightningCLI-style callables.
    """

    def __init__(
        self,
        backbone: Callable[[int, int], Backbone],
        features: FeatureConfig = FeatureConfig(),
        query_encoder: TextEncoder | None = None,
        doc_encoder: DocumentEncoder | None = None,
        short_history: Callable[[int], SequenceDecoder] | None = None,
        long_history: Callable[[int], SequenceDecoder] | None = None,
        sqdc: SQDCLoss | None = None,
        sqdc_weight: float = 0.1,
        stop_gradient: bool = False,
        freeze_encoders: bool = False,
        encoder_checkpoint: str | None = None,
        encoder_lr: float | None = None,
        encoder_weight_decay: float | None = None,
        compile: bool = False,
        optimizer: OptimizerCallable = _adamw,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        d = features.token_dim
        self.ids = IdFeatures(features)
        self.query_encoder, self.doc_encoder = query_encoder, doc_encoder
        self.query_proj = nn.Linear(query_encoder.out_dim, d) if query_encoder is not None else None
        self.doc_proj = nn.Linear(doc_encoder.out_dim, d) if doc_encoder is not None else None
        self.histories = nn.ModuleDict()
        for name, make in (("short", short_history), ("long", long_history)):
            if make is not None:
                decoder = make(d)
                if decoder.out_dim != d:
                    raise ValueError(f"model.{name}_history: decoder out_dim {decoder.out_dim} != features.token_dim {d}")
                self.histories[name] = decoder
        self.global_token = nn.Linear(d, d) if len(self.histories) else None
        num_tokens = self.ids.num_tokens + (query_encoder is not None) + (doc_encoder is not None) + len(self.histories)
        self.backbone = backbone(num_tokens, d)
        if sqdc is not None and (query_encoder is None or doc_encoder is None):
            raise ValueError("model.sqdc needs both model.query_encoder and model.doc_encoder")
        if sqdc is not None and query_encoder.out_dim != doc_encoder.out_dim:
            raise ValueError(f"model.sqdc compares query and document vectors, but model.query_encoder.out_dim={query_encoder.out_dim} "
                             f"!= model.doc_encoder.out_dim={doc_encoder.out_dim}; make them equal")
        if sqdc_weight < 0:
            raise ValueError(f"model.sqdc_weight must be >= 0, got {sqdc_weight}")
        self.sqdc, self.sqdc_weight, self.stop_gradient = sqdc, sqdc_weight, stop_gradient
        for name, value in (("encoder_lr", encoder_lr), ("encoder_weight_decay", encoder_weight_decay)):
            if value is not None and value < 0:
                raise ValueError(f"model.{name} must be >= 0 or null, got {value}")
        self.encoder_lr, self.encoder_weight_decay = encoder_lr, encoder_weight_decay
        self.freeze_encoders, self.encoder_checkpoint = freeze_encoders, encoder_checkpoint
        if freeze_encoders:
            if sqdc is not None:
                raise ValueError("model.freeze_encoders with model.sqdc: frozen encoders cannot learn from SQDC; drop one")
            for module in (query_encoder, doc_encoder):
                if module is not None:
                    module.requires_grad_(False)
        if compile:
            for module in (query_encoder, doc_encoder, self.backbone):
                if module is not None:
                    module.compile()
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler

    # ------------------------------------------------------------------ forward
    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Content vectors of the batch: ``query`` [B, q.out_dim] and ``doc`` [B, d.out_dim] (when present)."""
        out = {}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoders):
            if self.query_encoder is not None:
                out["query"] = self.query_encoder(batch["query_tokens"], batch["query_mask"])
            if self.doc_encoder is not None:
                out["doc"] = self.doc_encoder(batch)
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_encoders:  # frozen encoders stay in eval mode (dropout off, norms fixed)
            for module in (self.query_encoder, self.doc_encoder):
                if module is not None:
                    module.eval()
        return self

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.encoder_checkpoint:
            load_encoders(self, self.encoder_checkpoint)
        elif stage == "fit" and self.freeze_encoders:
            rank_zero_warn("model.freeze_encoders is set but model.encoder_checkpoint is not: the frozen encoders keep their random init")

    def feature_tokens(self, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]) -> torch.Tensor:
        """All feature tokens of a batch: ``[B, num_tokens, token_dim]``."""
        tokens = [self.ids(batch)]
        if self.stop_gradient:
            content = {k: v.detach() for k, v in content.items()}
        if "query" in content:
            tokens.append(self.query_proj(content["query"])[:, None])
        if "doc" in content:
            tokens.append(self.doc_proj(content["doc"])[:, None])
        tokens = torch.cat(tokens, dim=1)
        if len(self.histories):
            query = self.global_token(tokens.mean(1))
            seq = [dec(query, self.ids.doc_items(batch[f"hist_{name}"]), batch[f"hist_{name}_mask"]) for name, dec in self.histories.items()]
            tokens = torch.cat([tokens, torch.stack(seq, dim=1)], dim=1)
        return tokens

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CTR logits ``[B]`` and the content vectors they were computed from."""
        content = self.encode(batch)
        return self.backbone(self.feature_tokens(batch, content)), content

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits, content = self(batch)
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"])
        loss = bce
        if self.sqdc is not None:
            sqdc = self.sqdc(content["query"], content["doc"], batch["label"], batch["session_id"], batch["doc_index"])
            loss = bce + self.sqdc_weight * sqdc
            self.log("train/sqdc", sqdc, batch_size=len(logits))
        self.log("train/bce", bce, batch_size=len(logits))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """CTR logits ``[B]`` (metrics are rank-based; logits avoid ties from a saturated sigmoid)."""
        return self(batch)[0]

    def eval_loss(self, scores: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(scores, batch["label"])

    def predict_step(self, batch, batch_idx):
        """Click probabilities with the row's IDs and label."""
        out = super().predict_step(batch, batch_idx)
        return {**out, "score": torch.sigmoid(out["score"])}

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.query_encoder, self.doc_encoder) if m is not None for p in m.parameters()]

    def configure_optimizers(self):
        encoder = {id(p) for p in self.encoder_parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        group = {"params": [p for p in trainable if id(p) in encoder]}
        if self.encoder_lr is not None:
            group["lr"] = self.encoder_lr
        if self.encoder_weight_decay is not None:
            group["weight_decay"] = self.encoder_weight_decay
        groups = [{"params": [p for p in trainable if id(p) not in encoder]}] + ([group] if group["params"] else [])
        return self.build_optimizers(groups)
