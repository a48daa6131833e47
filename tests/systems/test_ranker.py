"""LemurRanker wiring: shapes, the SQDC term, optional components, swapped backbones/decoders."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from lemur.data import LemurDataModule
from lemur.encoders import DocumentEncoder, TransformerTextEncoder
from lemur.losses import SQDCLoss
from lemur.ranking import FeatureConfig, MLPBackbone, RankMixerBackbone
from lemur.sequence import LongerDecoder, MeanPoolDecoder
from lemur.systems import EncoderTraining, LemurRanker


@pytest.fixture
def batch(handmade_dataset: Path) -> dict[str, torch.Tensor]:
    dm = LemurDataModule(root=str(handmade_dataset), batch_size=16, num_workers=0)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def _encoders():
    query = TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, out_dim=24)
    doc = DocumentEncoder(
        {"text": TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, num_types=5, out_dim=24)},
        out_dim=24,
    )
    return query, doc


FEATURES = FeatureConfig(token_dim=8, user_buckets=50, doc_buckets=50, cat_buckets=30)


def test_full_model_shapes_and_sqdc_term(batch) -> None:
    query, doc = _encoders()
    model = LemurRanker(
        backbone=partial(MLPBackbone, hidden_dims=[16], dropout=0.0),
        features=FEATURES,
        query_encoder=query,
        doc_encoder=doc,
        short_history=MeanPoolDecoder,
        long_history=MeanPoolDecoder,
        sqdc=SQDCLoss(temperature=10.0),
        sqdc_weight=0.5,
    )
    logits, content = model(batch)
    assert logits.shape == (16,) and torch.isfinite(logits).all()
    assert content["query"].shape == content["doc"].shape == (16, 24)
    # ids (user, doc, cat_hour, dense_position) + query + doc + short + long
    assert model.backbone.num_tokens == 4 + 2 + 2
    loss = model.training_step(batch, 0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"])
    sqdc = model.sqdc(content["query"], content["doc"], batch["label"], batch["session_id"], batch["doc_index"])
    torch.testing.assert_close(loss, bce + 0.5 * sqdc)
    loss.backward()
    assert (
        model.query_encoder.token.weight.grad is not None
        and model.doc_encoder.modalities["text"].token.weight.grad is not None
    )


def test_id_only_model_has_no_content_tokens(batch) -> None:
    model = LemurRanker(backbone=MLPBackbone, features=FEATURES)
    logits, content = model(batch)
    assert content == {} and logits.shape == (16,)
    assert model.backbone.num_tokens == 4


def test_sqdc_without_encoders_or_with_unequal_dims_is_rejected() -> None:
    with pytest.raises(ValueError, match="model.sqdc needs both"):
        LemurRanker(backbone=MLPBackbone, features=FEATURES, sqdc=SQDCLoss())
    query, doc = _encoders()
    query = TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, out_dim=16)
    with pytest.raises(ValueError, match=r"query_encoder.out_dim=16 != model.doc_encoder.out_dim=24"):
        LemurRanker(backbone=MLPBackbone, features=FEATURES, query_encoder=query, doc_encoder=doc, sqdc=SQDCLoss())
    query, doc = _encoders()
    with pytest.raises(ValueError, match=r"sqdc_weight must be >= 0"):
        LemurRanker(
            backbone=MLPBackbone,
            features=FEATURES,
            query_encoder=query,
            doc_encoder=doc,
            sqdc=SQDCLoss(),
            sqdc_weight=-1.0,
        )


def test_swapped_backbone_and_decoder_train(batch) -> None:
    query, doc = _encoders()
    model = LemurRanker(
        backbone=partial(RankMixerBackbone, num_layers=1),
        features=FEATURES,
        query_encoder=query,
        doc_encoder=doc,
        long_history=partial(LongerDecoder, num_heads=2),
    )
    before = [p.detach().clone() for p in model.backbone.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.training_step(batch, 0).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
    assert isinstance(model.histories["long"], LongerDecoder)


def test_stop_gradient_keeps_bce_out_of_the_encoders(batch) -> None:
    query, doc = _encoders()
    model = LemurRanker(
        backbone=MLPBackbone,
        features=FEATURES,
        query_encoder=query,
        doc_encoder=doc,
        encoder_training=EncoderTraining(stop_gradient=True),
    )
    model.training_step(batch, 0).backward()
    assert all(p.grad is None for p in model.encoder_parameters())
    assert model.backbone.mlp[0].weight.grad is not None
    query, doc = _encoders()
    model = LemurRanker(
        backbone=MLPBackbone,
        features=FEATURES,
        query_encoder=query,
        doc_encoder=doc,
        sqdc=SQDCLoss(),
        encoder_training=EncoderTraining(stop_gradient=True),
    )
    model.training_step(batch, 0).backward()  # SQDC still trains the encoders
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder_parameters())


def test_encoder_parameter_group_has_its_own_lr_and_weight_decay() -> None:
    query, doc = _encoders()
    model = LemurRanker(
        backbone=MLPBackbone,
        features=FEATURES,
        query_encoder=query,
        doc_encoder=doc,
        encoder_training=EncoderTraining(lr=1e-4, weight_decay=0.0),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05),
    )
    opt = model.configure_optimizers()
    ranker, encoders = opt.param_groups
    assert (ranker["lr"], ranker["weight_decay"]) == (1e-3, 0.05)
    assert (encoders["lr"], encoders["weight_decay"]) == (1e-4, 0.0)
    assert sum(p.numel() for p in encoders["params"]) == sum(p.numel() for p in model.encoder_parameters())
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())


def test_encoder_training_settings_are_checked() -> None:
    for name in ("lr", "weight_decay"):
        with pytest.raises(ValueError, match=f"model.encoder_training.{name} must be >= 0 or null, got -1"):
            EncoderTraining(**{name: -1})


def test_the_constructor_holds_the_paper_and_three_extension_points() -> None:
    import inspect

    params = list(inspect.signature(LemurRanker.__init__).parameters)[1:]
    assert len(params) <= 21, params
    assert {"aux_losses", "logit_terms", "extra_tokens"} <= set(params)
