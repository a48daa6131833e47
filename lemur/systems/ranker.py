"""The LightningModule: wires encoders, memory bank, history decoders, features and backbone.

Data flow of one training row (see docs/architecture.md)::

    doc fields --doc_encoder (sampled rows)--> d --write--> memory bank ┐  (other rows: d = bank[doc])
    query text --query_encoder--------------> q                         ├-> feature tokens [B, T, token_dim]
    IDs + context --IdFeatures-------------------------------------------┤     --backbone--> logit (+ logit_terms)
    history IDs --bank read (no grad) | ID embedding--> items            │     --> BCE + lambda * SQDC(q, d)
         --short/long decoder(global token)--> ; cos(d, items) raw+sorted -┘         + sum_k w_k * aux_loss_k

Everything the paper has is a constructor argument; anything else plugs in through the three
extension points, ``aux_losses`` (``lemur.losses.AuxiliaryLoss``), ``logit_terms``
(``lemur.ranking.LogitTerm``) and ``extra_tokens`` (``lemur.ranking.FeatureToken``), as
``lemur.contrib`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lemur.contracts import check_output, check_vocabulary
from lemur.encoders.base import TextEncoder
from lemur.encoders.document import DocumentEncoder
from lemur.losses import AuxiliaryLoss, SQDCLoss
from lemur.memory.base import MemoryBank
from lemur.ranking.base import Backbone, FeatureToken, LogitTerm
from lemur.ranking.features import FeatureConfig, IdFeatures
from lemur.sequence.base import SequenceDecoder
from lemur.sequence.similarity import CosineSimilarityFeatures
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
        part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        if not part:
            raise ValueError(f"model.encoder_checkpoint: {path} holds no '{name}.*' weights")
        try:
            module.load_state_dict(part)
        except RuntimeError as err:
            raise ValueError(
                f"model.encoder_checkpoint: {path}: '{name}' does not match the recipe's {name} ({err})"
            ) from err


DOC_KEYS = ("doc_tokens", "doc_types", "doc_mask", "doc_image", "doc_image_mask")


@dataclass
class Sampling:
    """Which rows run the document encoder (paper, "Memory bank"; deployed p = q = 0.2).

    In training, rows outside ``forward`` take their target document's vector from the memory bank
    (no gradient); a document the bank has never seen is always encoded. At validation/test/predict
    every row is encoded, or none with ``serve_from_bank``. Needs a memory bank unless both shares
    are 1 and ``serve_from_bank`` is off.
    """

    forward: float = 1.0
    """p: share of rows whose target document runs the encoder forward (and is written to the bank)."""
    backward: float = 1.0
    """q <= p: share of rows whose encoder forward keeps its graph, so the loss trains the encoder."""
    serve_from_bank: bool = False
    """At validation/test/predict, take target documents from the bank (encoding only those never
    written): the paper's serving path, no document-encoder cost."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.backward <= self.forward <= 1.0:
            raise ValueError(
                f"model.sampling: need 0 <= backward <= forward <= 1, got forward={self.forward}, "
                f"backward={self.backward}"
            )

    @property
    def needs_bank(self) -> bool:
        return self.forward < 1 or self.backward < 1 or self.serve_from_bank


@dataclass
class EncoderTraining:
    """How the query/document encoders learn inside the ranker."""

    stop_gradient: bool = False
    """Feed the ranker detached query/document vectors, so only SQDC (and auxiliary losses) train the
    encoders: the paper's "stop-gradient" ablation (Table 5)."""
    lr: float | None = None
    """Learning rate of the encoder parameters (a second optimizer parameter group); None = the optimizer's."""
    weight_decay: float | None = None
    """Weight decay of the encoder parameters; None = the optimizer's."""

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"model.encoder_training.{name} must be >= 0 or null, got {value}")


class LemurRanker(RankingSystem):
    """CTR ranker over ID features, optional query/document encoders and history decoders.

    ``forward(batch) -> (logits [B], content)``; ``content`` holds ``query [B, Dq]`` and ``doc [B, Dd]``.

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
        sampling: the p / q row sampling of the document encoder and ``serve_from_bank``.
        sqdc, sqdc_weight: the query-to-document contrastive loss and its weight lambda in
            ``L = BCE + lambda * SQDC`` (a paper gap; 0.1 by default). Needs both encoders.
        aux_losses: extra weighted losses (``AuxiliaryLoss``), e.g. ``lemur.losses.CICLoss`` (paper
            Table 5, "+CIC"): ``L += weight * loss(self, batch, content)``, logged as ``train/<name>``.
        logit_terms: extra ``LogitTerm`` s added to the backbone's logit: ``term(self, batch, content) -> [B]``.
        extra_tokens: extra ``FeatureToken`` s, each one more backbone input token:
            ``token(self, batch, content) -> [B, token_dim]``.
        encoder_training: ``stop_gradient`` (paper Table 5) and the encoders' own lr / weight decay.
        freeze_encoders: keep the encoders fixed (no gradient, eval mode): the second stage of
            the two-stage baseline.
        encoder_checkpoint: a checkpoint (e.g. of ``ContrastivePretrainer``, stage 1) whose
            ``query_encoder.*`` / ``doc_encoder.*`` weights are loaded when fit starts.
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
        sampling: Sampling = Sampling(),
        sqdc: SQDCLoss | None = None,
        sqdc_weight: float = 0.1,
        aux_losses: Sequence[AuxiliaryLoss] = (),
        logit_terms: Sequence[LogitTerm] = (),
        extra_tokens: Sequence[FeatureToken] = (),
        encoder_training: EncoderTraining = EncoderTraining(),
        freeze_encoders: bool = False,
        encoder_checkpoint: str | None = None,
        compile: bool = False,
        nonfinite_loss: Literal["raise", "skip"] = "raise",
        optimizer: OptimizerCallable = _adamw,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(nonfinite_loss=nonfinite_loss)
        self.save_hyperparameters()
        d = self.token_dim = features.token_dim
        self.ids = IdFeatures(features)
        self.query_encoder, self.doc_encoder = query_encoder, doc_encoder
        self.query_proj = nn.Linear(query_encoder.out_dim, d) if query_encoder is not None else None
        self.doc_proj = nn.Linear(doc_encoder.out_dim, d) if doc_encoder is not None else None
        self.histories = nn.ModuleDict()
        for name, make in (("short", short_history), ("long", long_history)):
            if make is not None:
                decoder = make(d)
                if decoder.out_dim != d:
                    raise ValueError(
                        f"model.{name}_history: decoder out_dim {decoder.out_dim} != features.token_dim {d}"
                    )
                self.histories[name] = decoder
        self.global_token = nn.Linear(d, d) if any(dec.uses_query for dec in self.histories.values()) else None
        self.memory_bank, self.similarity, self.sampling = memory_bank, similarity, sampling
        if memory_bank is not None:
            if doc_encoder is None:
                raise ValueError("model.memory_bank stores document-encoder vectors: it needs model.doc_encoder")
            if memory_bank.dim != doc_encoder.out_dim:
                raise ValueError(
                    f"model.memory_bank.dim={memory_bank.dim} != model.doc_encoder.out_dim="
                    f"{doc_encoder.out_dim}; make them equal"
                )
        elif similarity is not None or sampling.needs_bank:
            raise ValueError(
                "model.similarity, model.sampling below 1 and model.sampling.serve_from_bank read the "
                "memory bank: set model.memory_bank"
            )
        self.history_proj = nn.Linear(memory_bank.dim, d) if memory_bank is not None and len(self.histories) else None
        self.similarity_proj = nn.Linear(similarity.out_dim, d) if similarity is not None else None
        num_tokens = (
            self.ids.num_tokens
            + (query_encoder is not None)
            + (doc_encoder is not None)
            + len(self.histories)
            + (similarity is not None)
            + len(extra_tokens)
        )
        self.backbone = backbone(num_tokens, d)
        self.bank_stats: dict[str, torch.Tensor] = {}
        if sqdc is not None and (query_encoder is None or doc_encoder is None):
            raise ValueError("model.sqdc needs both model.query_encoder and model.doc_encoder")
        if sqdc is not None and query_encoder.out_dim != doc_encoder.out_dim:
            raise ValueError(
                f"model.sqdc compares query and document vectors, but model.query_encoder.out_dim="
                f"{query_encoder.out_dim} != model.doc_encoder.out_dim={doc_encoder.out_dim}; make them equal"
            )
        if sqdc_weight < 0:
            raise ValueError(f"model.sqdc_weight must be >= 0, got {sqdc_weight}")
        self.sqdc, self.sqdc_weight = sqdc, sqdc_weight
        self.encoder_training, self.freeze_encoders, self.encoder_checkpoint = (
            encoder_training,
            freeze_encoders,
            encoder_checkpoint,
        )
        if freeze_encoders:
            if sqdc is not None:
                raise ValueError(
                    "model.freeze_encoders with model.sqdc: frozen encoders cannot learn from SQDC; drop one"
                )
            for module in (query_encoder, doc_encoder):
                if module is not None:
                    module.requires_grad_(False)
        self.aux_losses, self.logit_terms = nn.ModuleList(aux_losses), nn.ModuleList(logit_terms)
        self.extra_tokens = nn.ModuleList(extra_tokens)
        self._check_extensions()
        if compile:
            for module in (query_encoder, doc_encoder, self.backbone):
                if module is not None:
                    module.compile()
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler

    def _check_extensions(self) -> None:
        names = {"loss", "bce", "sqdc"}
        for key, items, base in (
            ("aux_losses", self.aux_losses, AuxiliaryLoss),
            ("logit_terms", self.logit_terms, LogitTerm),
            ("extra_tokens", self.extra_tokens, FeatureToken),
        ):
            for i, item in enumerate(items):
                if not isinstance(item, base):
                    raise ValueError(
                        f"model.{key}[{i}] must be a {base.__module__}.{base.__name__}, got {type(item).__name__}"
                    )
                if key == "extra_tokens" and getattr(item, "token_dim", None) != self.token_dim:
                    raise ValueError(
                        f"model.extra_tokens[{i}]: {type(item).__name__} token_dim={getattr(item, 'token_dim', None)} "
                        f"must equal model.features.token_dim={self.token_dim} "
                        "(write token_dim: ${model.init_args.features.token_dim})"
                    )
                item.validate(self, f"model.{key}[{i}]")
        for i, aux in enumerate(self.aux_losses):
            if aux.name in names:
                raise ValueError(
                    f"model.aux_losses[{i}]: the metric name train/{aux.name} is already taken; "
                    "set a distinct init_args.name"
                )
            names.add(aux.name)

    # ------------------------------------------------------------------ forward
    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Content vectors of the batch: ``query`` [B, q.out_dim] and ``doc`` [B, d.out_dim] (when present).

        Each distinct document of the batch is encoded once. With a memory bank, in training
        only the sampled rows' documents are encoded (``sampling``), at evaluation all of them
        (or, with ``sampling.serve_from_bank``, only those the bank lacks); the rest are bank reads.
        ``fresh_ids`` / ``fresh_doc`` hold what was encoded, for the bank write.
        """
        out = {}
        grad = torch.is_grad_enabled() and not self.freeze_encoders
        with torch.set_grad_enabled(grad):
            if self.query_encoder is not None:
                query = self.query_encoder(batch["query_tokens"], batch["query_mask"])
                out["query"] = check_output(query, "model.query_encoder", self.query_encoder, "TextEncoder",
                                            (len(batch["query_tokens"]), self.query_encoder.out_dim), "[B, out_dim]")
        if self.doc_encoder is not None:
            out.update(self._encode_documents(batch, grad))
        return out

    def _encode_documents(self, batch: dict[str, torch.Tensor], grad: bool) -> dict[str, torch.Tensor]:
        index = batch["doc_index"]
        docs, inverse = torch.unique(index, return_inverse=True)
        rows = torch.arange(len(index), device=index.device)
        first = torch.full_like(docs, len(index)).scatter_reduce(
            0, inverse, rows, reduce="amin"
        )  # a row of each document
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
            elif self.sampling.serve_from_bank:
                encode = ~known
        vectors = None
        if bank is not None and (self.training or self.sampling.serve_from_bank):
            vectors = bank.read(docs, dtype=self.doc_proj.weight.dtype)[0]
        with_grad, without = backward & encode, ~backward & encode
        parts = []
        for chosen, enabled in ((with_grad, True), (without, False)):
            if chosen.any():
                pick = first[chosen]
                sub = {k: batch[k][pick] for k in DOC_KEYS if k in batch}
                with torch.set_grad_enabled(enabled):
                    vec = self.doc_encoder(sub)
                    check_output(vec, "model.doc_encoder", self.doc_encoder, "DocumentEncoder",
                                 (len(pick), self.doc_encoder.out_dim), "[B, out_dim]")
                    parts.append((torch.nonzero(chosen).squeeze(1), vec))
        if vectors is None:  # no bank: every document was encoded
            vectors = torch.zeros(len(docs), self.doc_encoder.out_dim, device=index.device, dtype=parts[0][1].dtype)
        vectors = vectors.to(parts[0][1].dtype) if parts else vectors
        for where, fresh in parts:
            vectors = vectors.index_copy(0, where, fresh)
        out["doc"] = vectors[inverse]
        out["fresh_ids"], out["fresh_doc"] = docs[encode], vectors[encode].detach()
        out["encoded_rows"] = encode[inverse].float().mean()
        return out

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
            untrained = [
                name
                for name in ("query_encoder", "doc_encoder")
                if getattr(self, name) is not None and not getattr(getattr(self, name), "pretrained", False)
            ]
            if untrained:  # a pretrained encoder (HFTextEncoder, ...) frozen as loaded is a two-stage baseline
                rank_zero_warn(
                    "model.freeze_encoders is set but model.encoder_checkpoint is not: the frozen "
                    f"{' and '.join(untrained)} (not pretrained) keep their random init"
                )
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        num_docs = getattr(datamodule, "num_docs", None)
        vocab_size = getattr(datamodule, "vocab_size", None)
        if vocab_size is not None:  # a too small embedding table would fail later as a bare IndexError
            check_vocabulary(self.query_encoder, "model.query_encoder", vocab_size)
            for name, enc in (self.doc_encoder.modalities.items() if self.doc_encoder is not None else ()):
                check_vocabulary(enc, f"model.doc_encoder.modalities.{name}", vocab_size)
        if self.memory_bank is not None and num_docs is not None and num_docs > self.memory_bank.capacity:
            raise ValueError(
                f"model.memory_bank.init_args.capacity={self.memory_bank.capacity} is smaller than the dataset's "
                f"{num_docs} documents: set it to at least {num_docs}"
            )

    def _read_history(self, batch: dict[str, torch.Tensor], name: str) -> tuple[torch.Tensor, ...]:
        """``(docs [U], vectors [U, bank.dim], valid [U], index [B, L], mask [B, L])`` of one history."""
        ids, mask = batch[f"hist_{name}"], batch[f"hist_{name}_mask"].bool()
        docs, inverse = torch.unique(ids, return_inverse=True)
        vectors, valid = self.memory_bank.read(docs, dtype=self.doc_proj.weight.dtype)
        return docs, vectors, valid, inverse, mask

    def history_vectors(
        self, batch: dict[str, torch.Tensor], name: Literal["short", "long"]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The memory-bank vectors of one history sequence, for extension points: ``(table [U, bank.dim],
        index [B, L], mask [B, L] bool)``. Item ``l`` of row ``b`` is ``table[index[b, l]]`` (each distinct
        document read once); ``mask`` is False for padding and never-written entries. Bank reads carry no
        gradient. Needs ``memory_bank``."""
        if self.memory_bank is None:
            raise ValueError("LemurRanker.history_vectors reads the memory bank: set model.memory_bank")
        _, vectors, valid, index, mask = self._read_history(batch, name)
        return vectors, index, mask & valid[index]

    def _history_items(
        self, batch: dict[str, torch.Tensor], name: str, keep: int = 0
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One history: ``(table [U, token_dim], index [B, L], mask [B, L], bank vectors [B, keep, bank.dim] | None)``.

        The items are ``table[index]``: each distinct document of the batch's history is read (bank)
        or embedded (ID) and projected once, and the decoders gather (or, like mean pooling, reduce
        without gathering), so the cost grows with the distinct documents, not with ``B x L``.
        ``table`` is None when no decoder needs it (a bank without history decoders).
        """
        if self.memory_bank is None:
            ids, mask = batch[f"hist_{name}"], batch[f"hist_{name}_mask"].bool()
            docs, inverse = torch.unique(ids, return_inverse=True)
            return self.ids.doc_items(docs), inverse, mask, None
        docs, vectors, valid, inverse, mask = self._read_history(batch, name)
        if self.training:
            self.memory_bank.count_reads(docs, torch.bincount(inverse[mask], minlength=len(docs)))
        valid = valid[inverse]
        if self.training and mask.any():
            self.bank_stats[f"coverage_{name}"] = (valid & mask).sum() / mask.sum()
        mask = mask & valid
        table = self.history_proj(vectors) if self.history_proj is not None else None
        return table, inverse, mask, vectors[inverse[:, :keep]] if keep else None

    def feature_tokens(self, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]) -> torch.Tensor:
        """All feature tokens of a batch: ``[B, num_tokens, token_dim]``."""
        tokens = [self.ids(batch)]
        if "query" in content:
            tokens.append(self.query_proj(content["query"])[:, None])
        if "doc" in content:
            tokens.append(self.doc_proj(content["doc"])[:, None])
        tokens = torch.cat(tokens, dim=1)
        keep = {"long": self.similarity.max_len} if self.similarity is not None else {}
        histories = {
            name: self._history_items(batch, name, keep.get(name, 0))
            for name in ("short", "long")
            if name in self.histories or name in keep
        }
        extra = []
        if len(self.histories):
            query = self.global_token(tokens.mean(1)) if self.global_token is not None else tokens.mean(1)
            for name, dec in self.histories.items():
                vec = dec.forward_indexed(query, *histories[name][:3])
                extra.append(check_output(vec, f"model.{name}_history", dec, "SequenceDecoder",
                                          (len(query), dec.out_dim), "[B, out_dim]"))
        if self.similarity is not None:
            _, _, mask, vectors = histories["long"]
            extra.append(self.similarity_proj(self.similarity(content["doc"], vectors, mask[:, : vectors.shape[1]])))
        for i, token in enumerate(self.extra_tokens):
            extra.append(check_output(token(self, batch, content), f"model.extra_tokens[{i}]", token, "FeatureToken",
                                      (len(tokens), self.token_dim), "[B, token_dim]"))
        if extra:
            tokens = torch.cat([tokens, torch.stack(extra, dim=1)], dim=1)
        return tokens

    def logits(self, batch: dict[str, torch.Tensor], content: dict[str, torch.Tensor]) -> torch.Tensor:
        """CTR logits ``[B]``: the backbone over the feature tokens, plus each of ``logit_terms``."""
        if self.encoder_training.stop_gradient:
            content = {k: v.detach() for k, v in content.items()}
        tokens = self.feature_tokens(batch, content)
        out = check_output(self.backbone(tokens), "model.backbone", self.backbone, "Backbone", tokens.shape[:1], "[B]")
        for i, term in enumerate(self.logit_terms):
            out = out + check_output(term(self, batch, content), f"model.logit_terms[{i}]", term, "LogitTerm",
                                     tokens.shape[:1], "[B]")
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
            self.bank_stats = {
                "staleness": written.staleness,
                "coverage_target": content["bank_hit"],
                "encoded_rows": content["encoded_rows"],
            }
        logits = self.logits(batch, content)
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"])
        loss = bce
        if self.sqdc is not None:
            sqdc = self.sqdc(content["query"], content["doc"], batch["label"], batch["session_id"], batch["doc_index"])
            loss = bce + self.sqdc_weight * sqdc
            self.log("train/sqdc", sqdc, batch_size=len(logits))
        for i, aux in enumerate(self.aux_losses):
            value = aux(self, batch, content)
            check_output(value, f"model.aux_losses[{i}]", aux, "AuxiliaryLoss", (), "a scalar")
            loss = loss + aux.weight * value
            self.log(f"train/{aux.name}", value, batch_size=len(logits))
        self.log("train/bce", bce, batch_size=len(logits))
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
        if self.encoder_training.lr is not None:
            group["lr"] = self.encoder_training.lr
        if self.encoder_training.weight_decay is not None:
            group["weight_decay"] = self.encoder_training.weight_decay
        groups = [{"params": [p for p in trainable if id(p) not in encoder]}] + ([group] if group["params"] else [])
        return self.build_optimizers(groups)
