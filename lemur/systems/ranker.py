"""The LightningModule: wires encoders, memory bank, history decoders, features and backbone.

Data flow of one training row (see DESIGN.md)::

    doc fields --doc_encoder (sampled rows)--> d --write--> memory bank ┐  (other rows: d = bank[doc])
    query text --query_encoder--------------> q                         ├-> feature tokens [B, T, token_dim]
    IDs + context --IdFeatures-------------------------------------------┤     --backbone--> logit
    history IDs --bank read (no grad) | ID embedding--> items            │     --> BCE + lambda * SQDC(q, d)
         --short/long decoder(global token)--> ; cos(d, items) raw+sorted -┘
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lemur.encoders.base import TextEncoder
from lemur.encoders.document import DocumentEncoder
from lemur.losses import CICLoss, HistoryContrastiveLoss, SQDCLoss, WordBagReconstructionLoss
from lemur.memory.base import MemoryBank
from lemur.ranking.base import Backbone
from lemur.ranking.features import FeatureConfig, IdFeatures
from lemur.sequence.base import SequenceDecoder
from lemur.sequence.similarity import CosineSimilarityFeatures, HistorySimilarityLogit
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


DOC_KEYS = ("doc_tokens", "doc_types", "doc_mask", "doc_image", "doc_image_mask")


@dataclass
class Sampling:
    """Which training rows run the document encoder (paper, "Memory bank"; deployed p = q = 0.2).

    Rows outside ``forward`` take their target document's vector from the memory bank (no
    gradient); a document the bank has never seen is always encoded. Needs a memory bank
    unless both are 1.
    """

    forward: float = 1.0
    """p: share of rows whose target document runs the encoder forward (and is written to the bank)."""
    backward: float = 1.0
    """q <= p: share of rows whose encoder forward keeps its graph, so the loss trains the encoder."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.backward <= self.forward <= 1.0:
            raise ValueError(f"model.sampling: need 0 <= backward <= forward <= 1, got forward={self.forward}, backward={self.backward}")


class LemurRanker(RankingSystem):
    """CTR ranker over ID features, optional query/document encoders and history decoders.

    Args:
        backbone: ``Backbone`` class (+ init_args in the recipe); built as
            ``backbone(num_tokens, token_dim)`` once the token count is known.
        features: ID/context embedding sizes and the token width.
        query_encoder: text encoder of the query, or None (no query token).
        doc_encoder: multimodal document encoder, or None (an ID-only model).
        short_history, long_history: ``SequenceDecoder`` classes built as ``decoder(token_dim)``,
            or None to drop that sequence. Their items are the documents' memory-bank vectors
            (projected to ``token_dim``; never-written entries masked) when ``memory_bank`` is
            set, else document-ID embeddings.
        memory_bank: a ``MemoryBank`` of document vectors (``dim`` = ``doc_encoder.out_dim``),
            written every training step with the freshly encoded target documents, *before*
            the step's history reads (so a document encoded in this step is read fresh: the
            paper's dedup join). None = ID histories, no similarity features.
        similarity: ``CosineSimilarityFeatures`` of the target document vs the long history's
            bank vectors (raw + sorted), one more feature token. Needs ``memory_bank``.
        history_logit: ``HistorySimilarityLogit``, a term ``scale * cos(target document, mean of a history's
            bank vectors)`` added to the backbone's logit (not in the paper; see the class). Needs ``memory_bank``.
        sampling: the p / q row sampling of the document encoder (needs ``memory_bank`` below 1).
        serve_from_bank: at validation/test/predict, take target documents from the bank
            (encoding only those never written): the serving path, no document encoder cost.
        sqdc, sqdc_weight: the query-to-document contrastive loss and its weight lambda in
            ``L = BCE + lambda * SQDC`` (a paper gap; 0.1 by default). Needs both encoders.
        cic, cic_weight: the content-ID contrastive loss (EM3) between each target document's
            encoder vector and its ID embedding, added as ``cic_weight * CIC`` (paper Table 5,
            "+CIC"); its ``content_dim`` = ``doc_encoder.out_dim``, ``id_dim`` = ``features.token_dim``.
        history_contrastive, history_contrastive_weight: the history-to-target contrastive loss (not
            in the paper): each clicked target's encoder vector vs its user's history mean of bank
            vectors, added as ``weight * loss``. It trains the document geometry the bank histories
            and the similarity features rely on. Needs ``memory_bank``.
        reconstruction, reconstruction_weight: the word-bag reconstruction loss (not in the paper): a linear
            decoder predicts each target document's tokens from its encoder vector, added as ``weight * loss``,
            so the vector keeps which words the document holds (e.g. rare words that only some users care
            about) for the history modules to select from. Its ``input_dim`` = ``doc_encoder.out_dim``.
        join_gradient: in training, a history entry whose document is also one of this batch's target
            documents takes the batch's fresh vector *with its graph* instead of the (already fresh, but
            detached) bank copy, so the loss also trains the encoder through the history side of the
            dedup join, at no extra encoder cost (the paper does not say whether its join carries
            gradient). Needs ``memory_bank``.
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
        nonfinite_loss: ``raise`` (default) or ``skip`` a training step whose loss or fresh
            document vectors are NaN/inf (see ``RankingSystem``; skipped steps are counted).
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
        memory_bank: MemoryBank | None = None,
        similarity: CosineSimilarityFeatures | None = None,
        history_logit: HistorySimilarityLogit | None = None,
        sampling: Sampling = Sampling(),
        serve_from_bank: bool = False,
        sqdc: SQDCLoss | None = None,
        sqdc_weight: float = 0.1,
        cic: CICLoss | None = None,
        cic_weight: float = 0.1,
        history_contrastive: HistoryContrastiveLoss | None = None,
        history_contrastive_weight: float = 0.1,
        reconstruction: WordBagReconstructionLoss | None = None,
        reconstruction_weight: float = 0.1,
        join_gradient: bool = False,
        stop_gradient: bool = False,
        freeze_encoders: bool = False,
        encoder_checkpoint: str | None = None,
        encoder_lr: float | None = None,
        encoder_weight_decay: float | None = None,
        compile: bool = False,
        nonfinite_loss: Literal["raise", "skip"] = "raise",
        optimizer: OptimizerCallable = _adamw,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(nonfinite_loss=nonfinite_loss)
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
        self.global_token = nn.Linear(d, d) if any(dec.uses_query for dec in self.histories.values()) else None
        self.memory_bank, self.similarity, self.sampling, self.serve_from_bank = memory_bank, similarity, sampling, serve_from_bank
        if memory_bank is not None:
            if doc_encoder is None:
                raise ValueError("model.memory_bank stores document-encoder vectors: it needs model.doc_encoder")
            if memory_bank.dim != doc_encoder.out_dim:
                raise ValueError(f"model.memory_bank.dim={memory_bank.dim} != model.doc_encoder.out_dim={doc_encoder.out_dim}; make them equal")
        elif similarity is not None or sampling.forward < 1 or sampling.backward < 1 or serve_from_bank:
            raise ValueError("model.similarity, model.sampling below 1 and model.serve_from_bank read the memory bank: set model.memory_bank")
        if similarity is not None and similarity.input_dim is not None and similarity.input_dim != doc_encoder.out_dim:
            raise ValueError(f"model.similarity.init_args.input_dim={similarity.input_dim} must equal model.doc_encoder.out_dim={doc_encoder.out_dim}")
        if history_logit is not None:
            if memory_bank is None:
                raise ValueError("model.history_logit compares target documents with their memory-bank histories: it needs model.memory_bank")
            if history_logit.input_dim is not None and history_logit.input_dim != doc_encoder.out_dim:
                raise ValueError(f"model.history_logit.init_args.input_dim={history_logit.input_dim} must equal "
                                 f"model.doc_encoder.out_dim={doc_encoder.out_dim}")
        self.history_logit = history_logit
        self.history_proj = nn.Linear(memory_bank.dim, d) if memory_bank is not None and len(self.histories) else None
        self.similarity_proj = nn.Linear(similarity.out_dim, d) if similarity is not None else None
        num_tokens = (self.ids.num_tokens + (query_encoder is not None) + (doc_encoder is not None) + len(self.histories)
                      + (similarity is not None))
        self.backbone = backbone(num_tokens, d)
        self.bank_stats: dict[str, torch.Tensor] = {}
        if sqdc is not None and (query_encoder is None or doc_encoder is None):
            raise ValueError("model.sqdc needs both model.query_encoder and model.doc_encoder")
        if sqdc is not None and query_encoder.out_dim != doc_encoder.out_dim:
            raise ValueError(f"model.sqdc compares query and document vectors, but model.query_encoder.out_dim={query_encoder.out_dim} "
                             f"!= model.doc_encoder.out_dim={doc_encoder.out_dim}; make them equal")
        if sqdc is not None and sqdc.dims is not None and sqdc.dims > doc_encoder.out_dim:
            raise ValueError(f"model.sqdc.init_args.dims={sqdc.dims} exceeds model.doc_encoder.out_dim={doc_encoder.out_dim}")
        if sqdc is not None and sqdc.head is not None and sqdc.input_dim != (sqdc.dims or doc_encoder.out_dim):
            raise ValueError(f"model.sqdc.init_args.input_dim={sqdc.input_dim} must equal model.doc_encoder.out_dim={doc_encoder.out_dim} "
                             "(the projection head reads the encoder outputs)")
        if sqdc_weight < 0:
            raise ValueError(f"model.sqdc_weight must be >= 0, got {sqdc_weight}")
        self.sqdc, self.sqdc_weight, self.stop_gradient = sqdc, sqdc_weight, stop_gradient
        if cic is not None:
            if doc_encoder is None:
                raise ValueError("model.cic aligns document-encoder vectors with ID embeddings: it needs model.doc_encoder")
            if (cic.content_dim, cic.id_dim) != (doc_encoder.out_dim, d):
                raise ValueError(f"model.cic: content_dim={cic.content_dim}, id_dim={cic.id_dim} must equal "
                                 f"model.doc_encoder.out_dim={doc_encoder.out_dim} and model.features.token_dim={d}")
            if cic_weight < 0:
                raise ValueError(f"model.cic_weight must be >= 0, got {cic_weight}")
        self.cic, self.cic_weight = cic, cic_weight
        if history_contrastive is not None and memory_bank is None:
            raise ValueError("model.history_contrastive compares target documents with their users' memory-bank histories: "
                             "it needs model.memory_bank")
        if history_contrastive_weight < 0:
            raise ValueError(f"model.history_contrastive_weight must be >= 0, got {history_contrastive_weight}")
        if history_contrastive is not None and (history_contrastive.width or 0) > doc_encoder.out_dim:
            raise ValueError(f"model.history_contrastive.init_args: skip={history_contrastive.skip} + dims={history_contrastive.dims} "
                             f"exceeds model.doc_encoder.out_dim={doc_encoder.out_dim}")
        self.history_contrastive, self.history_contrastive_weight = history_contrastive, history_contrastive_weight
        if reconstruction is not None:
            if doc_encoder is None:
                raise ValueError("model.reconstruction decodes document-encoder vectors: it needs model.doc_encoder")
            if reconstruction.input_dim != doc_encoder.out_dim:
                raise ValueError(f"model.reconstruction.init_args.input_dim={reconstruction.input_dim} must equal "
                                 f"model.doc_encoder.out_dim={doc_encoder.out_dim}")
        if reconstruction_weight < 0:
            raise ValueError(f"model.reconstruction_weight must be >= 0, got {reconstruction_weight}")
        self.reconstruction, self.reconstruction_weight = reconstruction, reconstruction_weight
        if join_gradient and memory_bank is None:
            raise ValueError("model.join_gradient passes gradient through the memory bank's dedup join: it needs model.memory_bank")
        self.join_gradient = join_gradient
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
        """Content vectors of the batch: ``query`` [B, q.out_dim] and ``doc`` [B, d.out_dim] (when present).

        Each distinct document of the batch is encoded once. With a memory bank, in training
        only the sampled rows' documents are encoded (``sampling``), at evaluation all of them
        (or, with ``serve_from_bank``, only those the bank lacks); the rest are bank reads.
        ``fresh_ids`` / ``fresh_doc`` hold what was encoded, for the bank write.
        """
        out = {}
        grad = torch.is_grad_enabled() and not self.freeze_encoders
        with torch.set_grad_enabled(grad):
            if self.query_encoder is not None:
                out["query"] = self.query_encoder(batch["query_tokens"], batch["query_mask"])
        if self.doc_encoder is not None:
            out.update(self._encode_documents(batch, grad))
        return out

    def _encode_documents(self, batch: dict[str, torch.Tensor], grad: bool) -> dict[str, torch.Tensor]:
        index = batch["doc_index"]
        docs, inverse = torch.unique(index, return_inverse=True)
        rows = torch.arange(len(index), device=index.device)
        first = torch.full_like(docs, len(index)).scatter_reduce(0, inverse, rows, reduce="amin")  # a row of each document
        bank, out = self.memory_bank, {}
        encode = torch.ones(len(docs), dtype=torch.bool, device=index.device)
        backward = encode.clone() if grad else torch.zeros_like(encode)
        if bank is not None:
            known = bank.written(docs)
            if self.training:
                out["bank_hit"] = known.float().mean()  # share of this batch's documents already in the bank
                order = torch.randperm(len(index), device=index.device)
                encode = torch.zeros_like(encode)
                encode[inverse[order[: math.ceil(self.sampling.forward * len(index))]]] = True
                backward = torch.zeros_like(encode)
                if grad:
                    backward[inverse[order[: math.ceil(self.sampling.backward * len(index))]]] = True
                encode |= ~known  # a document the bank lacks must be encoded
            elif self.serve_from_bank:
                encode = ~known
        vectors = None
        if bank is not None and (self.training or self.serve_from_bank):
            vectors = bank.read(docs, dtype=self.doc_proj.weight.dtype)[0]
        with_grad, without = backward & encode, ~backward & encode
        parts = []
        for chosen, enabled in ((with_grad, True), (without, False)):
            if chosen.any():
                pick = first[chosen]
                sub = {k: batch[k][pick] for k in DOC_KEYS if k in batch}
                with torch.set_grad_enabled(enabled):
                    parts.append((torch.nonzero(chosen).squeeze(1), self.doc_encoder(sub)))
        if vectors is None:  # no bank: every document was encoded
            vectors = torch.zeros(len(docs), self.doc_encoder.out_dim, device=index.device, dtype=parts[0][1].dtype)
        vectors = vectors.to(parts[0][1].dtype) if parts else vectors
        for where, fresh in parts:
            vectors = vectors.index_copy(0, where, fresh)
        out["doc"] = vectors[inverse]
        out["batch_ids"], out["batch_doc"] = docs, vectors  # sorted distinct documents, their vectors (grad where encoded)
        out["fresh_ids"], out["fresh_doc"] = docs[encode], vectors[encode].detach()
        out["encoded_rows"] = encode[inverse].float().mean()
        if bank is not None and self.training and "hist_doc_index" in batch:
            self._encode_history_documents(batch, grad, out)
        return out

    def _encode_history_documents(self, batch: dict[str, torch.Tensor], grad: bool, out: dict[str, torch.Tensor]) -> None:
        """Encode the history documents the batch carries (``data.history.encode_docs``): they join the
        bank write and ``batch_ids`` / ``batch_doc`` (so ``join_gradient`` trains through them)."""
        ids = batch["hist_doc_index"]
        keep = ~torch.isin(ids, out["batch_ids"])  # never a target of this batch (the loader ensures it too)
        if not keep.any():
            return
        sub = {k: batch["hist_" + k][keep] for k in DOC_KEYS if "hist_" + k in batch}
        with torch.set_grad_enabled(grad):
            fresh = self.doc_encoder(sub).to(out["batch_doc"].dtype)
        ids = ids[keep]
        all_ids, all_vectors = torch.cat([out["batch_ids"], ids]), torch.cat([out["batch_doc"], fresh])
        order = torch.argsort(all_ids)
        out["batch_ids"], out["batch_doc"] = all_ids[order], all_vectors[order]
        out["fresh_ids"] = torch.cat([out["fresh_ids"], ids])
        out["fresh_doc"] = torch.cat([out["fresh_doc"], fresh.detach()])

    @torch.no_grad()
    def document_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Document-encoder output ``[N, out_dim]`` for a batch of document fields (bank warm start / refresh)."""
        return self.doc_encoder(batch)

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
        num_docs = getattr(getattr(self.trainer, "datamodule", None), "num_docs", None) if self._trainer is not None else None
        if self.memory_bank is not None and num_docs is not None and num_docs > self.memory_bank.capacity:
            raise ValueError(f"model.memory_bank.init_args.capacity={self.memory_bank.capacity} is smaller than the dataset's "
                             f"{num_docs} documents: set it to at least {num_docs}")

    def _history_items(self, batch: dict[str, torch.Tensor], name: str, keep: int = 0,
                       content: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(table [U, token_dim], index [B, L], mask [B, L], bank vectors [B, keep, bank.dim] or None)`` of one history.

        The items are ``table[index]``: each distinct document of the batch's history is read (bank)
        or embedded (ID) and projected once, and the decoders gather (or, like mean pooling, reduce
        without gathering), so the cost grows with the distinct documents, not with ``B x L``.
        ``table`` is None when no decoder needs it (a bank without history decoders).
        """
        ids, mask = batch[f"hist_{name}"], batch[f"hist_{name}_mask"].bool()
        docs, inverse = torch.unique(ids, return_inverse=True)
        if self.memory_bank is None:
            return self.ids.doc_items(docs), inverse, mask, None
        vectors, valid = self.memory_bank.read(docs, dtype=self.doc_proj.weight.dtype)
        if self.join_gradient and self.training and content is not None and "batch_ids" in content:
            vectors = self._join_fresh(docs, vectors, content["batch_ids"], content["batch_doc"])
        if self.training:
            self.memory_bank.count_reads(docs, torch.bincount(inverse[mask], minlength=len(docs)))
        valid = valid[inverse]
        if self.training and mask.any():
            self.bank_stats[f"coverage_{name}"] = (valid & mask).sum() / mask.sum()
        mask = mask & valid
        table = self.history_proj(vectors) if self.history_proj is not None else None
        return table, inverse, mask, vectors[inverse[:, :keep]] if keep else None

    @staticmethod
    def _join_fresh(ids: torch.Tensor, vectors: torch.Tensor, batch_ids: torch.Tensor, batch_vectors: torch.Tensor) -> torch.Tensor:
        """``vectors`` with the rows whose ID is one of this batch's documents replaced by the batch's own
        vectors, graph included (``join_gradient``). ``batch_ids`` is sorted (``torch.unique``)."""
        if not len(batch_ids):
            return vectors
        where = torch.searchsorted(batch_ids, ids).clamp(max=len(batch_ids) - 1)
        hit = batch_ids[where] == ids
        return torch.where(hit[:, None], batch_vectors[where].to(vectors.dtype), vectors)

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
        keep = {"long": self.similarity.max_len} if self.similarity is not None else {}
        histories = {name: self._history_items(batch, name, keep.get(name, 0), content) for name in ("short", "long")
                     if name in self.histories or name in keep}
        extra = []
        if len(self.histories):
            query = self.global_token(tokens.mean(1)) if self.global_token is not None else tokens.mean(1)
            extra += [dec.forward_indexed(query, *histories[name][:3]) for name, dec in self.histories.items()]
        if self.similarity is not None:
            _, _, mask, vectors = histories["long"]
            extra.append(self.similarity_proj(self.similarity(content["doc"], vectors, mask[:, : vectors.shape[1]])))
        if extra:
            tokens = torch.cat([tokens, torch.stack(extra, dim=1)], dim=1)
        return tokens

    def logits(self, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]) -> torch.Tensor:
        """CTR logits ``[B]``: the backbone over the feature tokens, plus the ``history_logit`` term when set."""
        out = self.backbone(self.feature_tokens(batch, content))
        if self.history_logit is not None:
            name = self.history_logit.history
            ids, mask = batch[f"hist_{name}"], batch[f"hist_{name}_mask"].bool()
            docs, inverse = torch.unique(ids, return_inverse=True)
            vectors, valid = self.memory_bank.read(docs, dtype=content["doc"].dtype)
            doc = content["doc"].detach() if self.stop_gradient else content["doc"]
            out = out + self.history_logit(doc, vectors, inverse, mask & valid[inverse])
        return out

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CTR logits ``[B]`` and the content vectors they were computed from (no bank write: see training_step)."""
        content = self.encode(batch)
        return self.logits(batch, content), content

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        content = self.encode(batch)
        if self.memory_bank is not None:  # write before the history reads: the dedup join
            if not self.finite_or_skip(content["fresh_doc"], "document vectors"):
                return None  # never let NaN/inf into the bank
            written = self.memory_bank.write(content["fresh_ids"], content["fresh_doc"], step=self.global_step)
            self.bank_stats = {"staleness": written.staleness, "coverage_target": content["bank_hit"],
                               "encoded_rows": content["encoded_rows"]}
        logits = self.logits(batch, content)
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"])
        loss = bce
        if self.sqdc is not None:
            sqdc = self.sqdc(content["query"], content["doc"], batch["label"], batch["session_id"], batch["doc_index"])
            loss = bce + self.sqdc_weight * sqdc
            self.log("train/sqdc", sqdc, batch_size=len(logits))
        if self.cic is not None:  # content vs ID embedding of the same target documents (EM3's CIC)
            cic = self.cic(content["doc"], self.ids.doc_items(batch["doc_index"]), batch["doc_index"])
            loss = loss + self.cic_weight * cic
            self.log("train/cic", cic, batch_size=len(logits))
        if self.reconstruction is not None:  # the target documents' own tokens from their vectors
            rec = self.reconstruction(content["doc"], batch["doc_tokens"], batch["doc_mask"], batch["doc_types"])
            loss = loss + self.reconstruction_weight * rec
            self.log("train/reconstruction", rec, batch_size=len(logits))
        if self.history_contrastive is not None:  # targets vs their users' bank histories (read after this step's write)
            name = self.history_contrastive.history
            ids, mask = batch[f"hist_{name}"], batch[f"hist_{name}_mask"].bool()
            docs, inverse = torch.unique(ids, return_inverse=True)
            vectors, valid = self.memory_bank.read(docs, dtype=content["doc"].dtype)
            hcl = self.history_contrastive(content["doc"], vectors[inverse], mask & valid[inverse], batch["label"], batch["user_id"])
            loss = loss + self.history_contrastive_weight * hcl
            self.log("train/history_contrastive", hcl, batch_size=len(logits))
        self.log("train/bce", bce, batch_size=len(logits))
        if self.history_logit is not None:
            self.log("train/history_logit_scale", self.history_logit.scale.detach(), batch_size=len(logits))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss if self.finite_or_skip(loss) else None

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
