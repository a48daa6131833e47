"""lemur.contrib plug-ins inside LemurRanker, through its public extension points only."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from lemur.contrib import HistorySimilarityLogit, WordBagReconstructionLoss
from lemur.data import LemurDataModule
from lemur.encoders import DocumentEncoder, TransformerTextEncoder
from lemur.losses import SQDCLoss
from lemur.memory import ReplicatedMemoryBank
from lemur.ranking import FeatureConfig, MLPBackbone
from lemur.sequence import CosineSimilarityFeatures, LongerDecoder
from lemur.systems import EncoderTraining, LemurRanker

FEATURES = FeatureConfig(token_dim=8, user_buckets=50, doc_buckets=50, cat_buckets=30)


@pytest.fixture
def batch(handmade_dataset: Path) -> dict[str, torch.Tensor]:
    dm = LemurDataModule(root=str(handmade_dataset), batch_size=32, num_workers=0)
    dm.setup("fit")
    torch.manual_seed(0)
    return next(iter(dm.train_dataloader()))


def build(**kwargs) -> LemurRanker:
    torch.manual_seed(0)

    def text(types: int) -> TransformerTextEncoder:
        return TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, num_types=types, out_dim=24)

    args = dict(
        backbone=partial(MLPBackbone, hidden_dims=[16], dropout=0.0),
        features=FEATURES,
        query_encoder=text(1),
        doc_encoder=DocumentEncoder({"text": text(5)}, out_dim=24),
        short_history=partial(LongerDecoder, num_heads=2),
        long_history=partial(LongerDecoder, num_heads=2),
        memory_bank=ReplicatedMemoryBank(capacity=40, dim=24),
        similarity=CosineSimilarityFeatures(max_len=8),
        sqdc=SQDCLoss(temperature=10.0),
    )
    args.update(kwargs)
    return LemurRanker(**args)


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_history_logit_adds_its_term_to_the_backbone_and_trains_the_encoder(batch, stop_gradient) -> None:
    term = HistorySimilarityLogit(init_scale=3.0)
    model = build(logit_terms=[term], sqdc=None, encoder_training=EncoderTraining(stop_gradient=stop_gradient))
    model.train()
    model.memory_bank.write(torch.arange(40), torch.randn(40, 24), step=0)  # histories need written entries
    content = model.encode(batch)
    logits = model.logits(batch, content)
    plain = model.backbone(model.feature_tokens(batch, content))
    mask = batch["hist_long_mask"].bool()
    expected = term.compute(content["doc"], model.memory_bank.table, batch["hist_long"], mask)
    torch.testing.assert_close(logits, plain + expected)
    assert expected.abs().sum() > 0
    model.log = lambda *a, **kw: None
    model.training_step(batch, 0).backward()
    assert term.scale.grad is not None
    # the term reaches the document encoder unless stop_gradient cuts every ranker path to it
    touched = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.doc_encoder.parameters())
    assert touched != stop_gradient


def test_history_logit_needs_a_bank_and_the_document_width() -> None:
    with pytest.raises(ValueError, match=r"model.logit_terms\[0\]: HistorySimilarityLogit .*needs model.memory_bank"):
        build(memory_bank=None, similarity=None, logit_terms=[HistorySimilarityLogit()])
    with pytest.raises(
        ValueError,
        match=r"model.logit_terms\[0\]: HistorySimilarityLogit input_dim=16 must equal "
        r"model.doc_encoder.out_dim=24",
    ):
        build(logit_terms=[HistorySimilarityLogit(proj_dim=8, input_dim=16)])


def test_reconstruction_loss_trains_the_document_encoder_and_checks_its_width(batch) -> None:
    vocab = int(batch["doc_tokens"].max()) + 1
    loss = WordBagReconstructionLoss(input_dim=24, vocab_size=vocab)
    model = build(
        aux_losses=[loss], sqdc=None, encoder_training=EncoderTraining(stop_gradient=True)
    )  # only the reconstruction reaches the encoder
    model.train()
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)
    model.training_step(batch, 0).backward()
    assert float(logged["train/word_bag_reconstruction"]) > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.doc_encoder.parameters())
    assert loss.decoder.weight.grad is not None
    with pytest.raises(
        ValueError,
        match=r"model.aux_losses\[0\]: WordBagReconstructionLoss input_dim=16 must equal "
        r"model.doc_encoder.out_dim=24",
    ):
        build(aux_losses=[WordBagReconstructionLoss(input_dim=16)])
    with pytest.raises(ValueError, match="weight must be a number >= 0"):
        WordBagReconstructionLoss(input_dim=24, weight=-1.0)
