"""LemurRanker's extension points: aux_losses (AuxiliaryLoss) and logit_terms (LogitTerm), with a user's
plug-ins (tests/plugins) and CIC; history_vectors; bad plug-ins are named by their recipe key."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from lemur.data import LemurDataModule
from lemur.encoders import DocumentEncoder, TransformerTextEncoder
from lemur.losses import AuxiliaryLoss, CICLoss, SQDCLoss
from lemur.memory import ReplicatedMemoryBank
from lemur.ranking import FeatureConfig, LogitTerm, MLPBackbone
from lemur.sequence import CosineSimilarityFeatures, MeanPoolDecoder
from lemur.systems import EncoderTraining, LemurRanker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
from my_components import DocNormLoss, UserBias  # noqa: E402

FEATURES = FeatureConfig(token_dim=8, user_buckets=50, doc_buckets=50, cat_buckets=30)


@pytest.fixture
def batch(handmade_dataset: Path) -> dict[str, torch.Tensor]:
    dm = LemurDataModule(root=str(handmade_dataset), batch_size=32, num_workers=0)
    dm.setup("fit")
    torch.manual_seed(0)
    return next(iter(dm.train_dataloader()))


def build(bank: bool = True, **kwargs) -> LemurRanker:
    torch.manual_seed(0)

    def text(types: int) -> TransformerTextEncoder:
        return TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, num_types=types, out_dim=24)

    args = dict(
        backbone=partial(MLPBackbone, hidden_dims=[16], dropout=0.0),
        features=FEATURES,
        query_encoder=text(1),
        doc_encoder=DocumentEncoder({"text": text(5)}, out_dim=24),
        short_history=MeanPoolDecoder,
        long_history=MeanPoolDecoder,
        sqdc=SQDCLoss(temperature=10.0),
    )
    if bank:
        args.update(
            memory_bank=ReplicatedMemoryBank(capacity=40, dim=24), similarity=CosineSimilarityFeatures(max_len=8)
        )
    args.update(kwargs)
    return LemurRanker(**args)


def _step(model: LemurRanker, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.train()
    logged: dict[str, torch.Tensor] = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)
    return model.training_step(batch, 0), logged


def test_aux_losses_are_weighted_into_the_loss_and_logged_by_name(batch) -> None:
    model = build(aux_losses=[DocNormLoss(norm=0.5, weight=0.3), DocNormLoss(norm=2.0, weight=0.0, name="norm_2")])
    loss, logged = _step(model, batch)
    assert {"train/doc_norm", "train/norm_2", "train/bce", "train/sqdc", "train/loss"} <= logged.keys()
    want = logged["train/bce"] + 0.1 * logged["train/sqdc"] + 0.3 * logged["train/doc_norm"]  # weight 0 adds nothing
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.doc_encoder.parameters())


def test_logit_terms_are_added_to_the_backbone_logit_and_trained(batch) -> None:
    model = build(logit_terms=[UserBias(buckets=7), UserBias(buckets=5)])
    model.train()
    content = model.encode(batch)
    plain = model.backbone(model.feature_tokens(batch, content))
    terms = sum(term(model, batch, content) for term in model.logit_terms)
    torch.testing.assert_close(model.logits(batch, content), plain + terms)
    loss, _ = _step(model, batch)
    loss.backward()
    assert all(term.bias.weight.grad is not None for term in model.logit_terms)
    model.eval()
    with torch.no_grad():  # evaluation scores include the terms too
        content = model.encode(batch)
        torch.testing.assert_close(model.score(batch), model.logits(batch, content))
    params = {id(p) for g in model.configure_optimizers().param_groups for p in g["params"]}
    assert {id(p) for p in model.logit_terms.parameters()} <= params  # plug-in parameters are optimised


def test_plug_ins_are_checked_at_construction_naming_their_recipe_key() -> None:
    with pytest.raises(ValueError, match=r"model.aux_losses\[1\]: DocNormLoss needs model.doc_encoder"):
        LemurRanker(backbone=MLPBackbone, features=FEATURES, aux_losses=[AuxiliaryLossStub(), DocNormLoss()])
    with pytest.raises(ValueError, match=r"model.logit_terms\[0\] must be a lemur.ranking.base.LogitTerm"):
        build(logit_terms=[DocNormLoss()])
    with pytest.raises(ValueError, match=r"model.aux_losses\[1\]: the metric name train/doc_norm is already taken"):
        build(aux_losses=[DocNormLoss(), DocNormLoss()])
    with pytest.raises(ValueError, match=r"model.aux_losses\[0\]: the metric name train/sqdc"):
        build(aux_losses=[DocNormLoss(name="sqdc")])


class AuxiliaryLossStub(AuxiliaryLoss):
    def forward(self, ranker, batch, content) -> torch.Tensor:
        return torch.zeros(())


class LogitTermStub(LogitTerm):
    def forward(self, ranker, batch, content) -> torch.Tensor:
        return torch.zeros(len(batch["label"]))


def test_the_bases_are_abstract_and_name_themselves() -> None:
    with pytest.raises(TypeError):
        AuxiliaryLoss()
    with pytest.raises(TypeError):
        LogitTerm()
    assert AuxiliaryLossStub().name == "auxiliary_loss_stub" and AuxiliaryLossStub(weight=2).weight == 2.0
    assert LogitTermStub().validate(build(), "model.logit_terms[0]") is None


def test_cic_is_an_auxiliary_loss_of_the_ranker(batch) -> None:
    model = build(aux_losses=[CICLoss(content_dim=24, id_dim=8, weight=0.5)])
    loss, logged = _step(model, batch)
    assert float(logged["train/cic"]) > 0
    torch.testing.assert_close(loss, logged["train/bce"] + 0.1 * logged["train/sqdc"] + 0.5 * logged["train/cic"])
    loss.backward()
    assert model.ids.doc.weight.grad is not None  # CIC reaches the ID embeddings ...
    assert model.aux_losses[0].content_proj.weight.grad is not None  # ... and its own projections
    with pytest.raises(
        ValueError,
        match=r"model.aux_losses\[0\]: CICLoss content_dim=128, id_dim=64 must equal "
        r"model.doc_encoder.out_dim=24 and model.features.token_dim=8",
    ):
        build(aux_losses=[CICLoss(content_dim=128, id_dim=64)])
    with pytest.raises(ValueError, match=r"model.aux_losses\[0\]: CICLoss .* needs model.doc_encoder"):
        LemurRanker(backbone=MLPBackbone, features=FEATURES, aux_losses=[CICLoss(content_dim=8, id_dim=8)])


def test_history_vectors_are_the_bank_reads_of_a_history(batch) -> None:
    model = build()
    model.memory_bank.write(torch.arange(0, 40, 2), torch.randn(20, 24), step=0)  # half the documents
    table, index, mask = model.history_vectors(batch, "long")
    ids = batch["hist_long"]
    torch.testing.assert_close(table[index], model.memory_bank.table[ids])
    assert len(table) == len(set(ids.flatten().tolist())) and not table.requires_grad
    assert torch.equal(mask, batch["hist_long_mask"].bool() & (ids % 2 == 0))
    assert not model.memory_bank.reads.any()  # a plug-in's read is not counted in the bank's statistics
    with pytest.raises(ValueError, match="history_vectors reads the memory bank"):
        build(bank=False).history_vectors(batch, "long")


def test_logit_terms_see_detached_content_under_stop_gradient(batch) -> None:
    seen = []

    class Probe(LogitTermStub):
        def forward(self, ranker, batch, content):
            seen.append(content["doc"].requires_grad)
            return super().forward(ranker, batch, content)

    for stop in (False, True):
        model = build(logit_terms=[Probe()], encoder_training=EncoderTraining(stop_gradient=stop))
        _step(model, batch)
    assert seen == [True, False]
