"""lemur.contrib.ImpressionHistoryToken (a FeatureToken) and IdBiasLogit (a LogitTerm) in LemurRanker."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from lemur.contrib import IdBiasLogit, ImpressionHistoryToken
from lemur.data import HistoryConfig, LemurDataModule
from lemur.encoders import DocumentEncoder, TransformerTextEncoder
from lemur.memory import ReplicatedMemoryBank
from lemur.ranking import FeatureConfig, MLPBackbone
from lemur.sequence import MeanPoolDecoder
from lemur.systems import LemurRanker

FEATURES = FeatureConfig(token_dim=8, user_buckets=50, doc_buckets=50, cat_buckets=30)


@pytest.fixture
def batch(handmade_dataset: Path) -> dict[str, torch.Tensor]:
    dm = LemurDataModule(
        root=str(handmade_dataset), batch_size=64, num_workers=0, history=HistoryConfig(impressions_len=8)
    )
    dm.setup("fit")
    torch.manual_seed(0)
    return next(iter(dm.train_dataloader()))


def build(bank: bool = False, **kwargs) -> LemurRanker:
    torch.manual_seed(0)
    args = dict(backbone=partial(MLPBackbone, hidden_dims=[16], dropout=0.0), features=FEATURES,
                short_history=MeanPoolDecoder, long_history=MeanPoolDecoder)
    if bank:
        text = TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, num_types=5, out_dim=24)
        args.update(doc_encoder=DocumentEncoder({"text": text}, out_dim=24),
                    memory_bank=ReplicatedMemoryBank(capacity=40, dim=24))
    args.update(kwargs)
    return LemurRanker(**args)


def reference(table, index, label, mask, out: torch.nn.Linear) -> torch.Tensor:
    """Row by row: mean of clicked items, mean of skipped items, log1p counts, smoothed rate."""
    rows = []
    for b in range(index.shape[0]):
        feats = []
        for want in (1, 0):
            picked = [table[index[b, j]] for j in range(index.shape[1]) if mask[b, j] and (label[b, j] == 1) == want]
            feats.append(torch.stack(picked).mean(0) if picked else torch.zeros(table.shape[1]))
        n1 = sum(1 for j in range(index.shape[1]) if mask[b, j] and label[b, j] == 1)
        n0 = sum(1 for j in range(index.shape[1]) if mask[b, j] and label[b, j] != 1)
        extra = torch.tensor([torch.log1p(torch.tensor(float(n1))), torch.log1p(torch.tensor(float(n0))),
                              (n1 + 1) / (n1 + n0 + 2)])
        rows.append(out(torch.cat([*feats, extra])))
    return torch.stack(rows)


def test_impression_token_math_matches_a_loop() -> None:
    torch.manual_seed(1)
    token = ImpressionHistoryToken(token_dim=6)
    table = torch.randn(9, 6)
    index = torch.randint(0, 9, (5, 7))
    label = torch.randint(0, 2, (5, 7))
    mask = torch.rand(5, 7) < 0.7
    mask[0] = False  # a row without impressions
    mask[1] = True
    label[1] = 1  # a row that clicked everything
    got = token.compute(table, index, label, mask)
    torch.testing.assert_close(got, reference(table, index, label, mask, token.out), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bank", [False, True])
def test_impression_token_feeds_the_backbone_and_trains(batch, bank: bool) -> None:
    dim = 24 if bank else None
    model = build(bank=bank, extra_tokens=[ImpressionHistoryToken(token_dim=8, input_dim=dim)])
    plain = build(bank=bank)
    assert model.backbone.num_tokens == plain.backbone.num_tokens + 1
    model.train()
    if bank:
        model.memory_bank.write(torch.arange(40), torch.randn(40, 24), step=0)
    assert batch["hist_imp_mask"].any() and (batch["hist_imp_label"][batch["hist_imp_mask"]] == 0).any()
    loss = model.training_step(batch, 0)
    loss.backward()
    token = model.extra_tokens[0]
    assert token.out.weight.grad is not None and token.out.weight.grad.abs().sum() > 0
    if bank:
        assert token.item_proj.weight.grad.abs().sum() > 0
    else:  # the items are the shared document-ID embeddings
        assert model.ids.doc.weight.grad.abs().sum() > 0
    # The token answers to what the history holds: flipping the labels changes the logits.
    model.eval()
    flipped = {**batch, "hist_imp_label": 1 - batch["hist_imp_label"]}
    with torch.no_grad():
        assert not torch.allclose(model(batch)[0], model(flipped)[0])


def test_impression_token_errors(batch) -> None:
    with pytest.raises(ValueError, match=r"model.extra_tokens\[0\]: ImpressionHistoryToken token_dim=4 must equal "
                                         r"model.features.token_dim=8"):
        build(extra_tokens=[ImpressionHistoryToken(token_dim=4)])
    with pytest.raises(ValueError, match=r"model.extra_tokens\[0\]: .*input_dim to model.memory_bank.dim=24"):
        build(bank=True, extra_tokens=[ImpressionHistoryToken(token_dim=8)])
    with pytest.raises(ValueError, match=r"model.extra_tokens\[0\]: .*no memory bank"):
        build(extra_tokens=[ImpressionHistoryToken(token_dim=8, input_dim=24)])
    with pytest.raises(ValueError, match="must be a positive int"):
        ImpressionHistoryToken(token_dim=0)
    with pytest.raises(ValueError, match=r"model.extra_tokens\[0\] must be a lemur.ranking.base.FeatureToken"):
        build(extra_tokens=[IdBiasLogit()])
    model = build(extra_tokens=[ImpressionHistoryToken(token_dim=8)])
    bare = {k: v for k, v in batch.items() if not k.startswith("hist_imp")}
    with pytest.raises(ValueError, match="impressions_len"):
        model(bare)


def test_id_bias_starts_at_zero_trains_and_leaves_unseen_ids_at_zero(batch) -> None:
    term = IdBiasLogit(user_buckets=1000, doc_buckets=1000)
    model = build(logit_terms=[term])
    plain = build()
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch)[0], plain(batch)[0])  # zero at the start
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(3):
        opt.zero_grad()
        model.training_step(batch, 0).backward()
        opt.step()
    from lemur.ranking.features import hash_bucket

    seen = torch.zeros(1000, dtype=torch.bool)
    seen[hash_bucket(batch["user_id"], 1000)] = True
    assert term.user.weight[seen].abs().sum() > 0
    assert (term.user.weight[~seen] == 0).all()
    with pytest.raises(ValueError, match="both 0"):
        IdBiasLogit(user_buckets=0, doc_buckets=0)
    with pytest.raises(ValueError, match="user_buckets must be an int >= 0"):
        IdBiasLogit(user_buckets=-1)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        IdBiasLogit(scale=0)
    scaled = IdBiasLogit(user_buckets=1000, doc_buckets=1000, scale=20.0)
    scaled.user.weight.data.fill_(0.5)
    assert torch.allclose(scaled(model, batch, {}), torch.full((len(batch["label"]),), 10.0))


def test_popularity_prior_counts_causally_then_leaves_one_out(batch, monkeypatch) -> None:
    from lemur.contrib import PopularityPriorLogit
    from lemur.ranking.features import hash_bucket

    term = PopularityPriorLogit(doc_buckets=64, strength=2.0)
    model = build(logit_terms=[term])
    model.train()
    doc = hash_bucket(batch["doc_index"], 64)
    label = batch["label"].double()
    # epoch 0, first batch: nothing counted yet, every row gets the neutral rate 1/2 (its own label unseen)
    first = term(model, batch, {})
    assert torch.allclose(first, torch.zeros_like(first))
    clicks = torch.zeros(64, dtype=torch.float64).index_add_(0, doc, label)
    shown = torch.zeros(64, dtype=torch.float64).index_add_(0, doc, torch.ones_like(label))
    assert torch.equal(term.clicks, clicks) and torch.equal(term.shown, shown)
    prior = clicks.sum() / shown.sum()
    # evaluation: the full counts, no update
    model.eval()
    expected = torch.logit((clicks[doc] + 2 * prior) / (shown[doc] + 2)).float()
    torch.testing.assert_close(term(model, batch, {}), expected)
    assert torch.equal(term.shown, shown)
    # a later epoch: counts fixed, each training row's own label and impression left out
    monkeypatch.setattr(LemurRanker, "current_epoch", property(lambda self: 1))
    model.train()
    loo = torch.logit((clicks[doc] - label + 2 * prior) / (shown[doc] - 1 + 2)).float()
    torch.testing.assert_close(term(model, batch, {}), loo)
    assert torch.equal(term.shown, shown)
    # the learned scale trains
    model.training_step(batch, 0).backward()
    assert term.scale.grad is not None and term.scale.grad != 0
    with pytest.raises(ValueError, match="strength must be a positive number"):
        PopularityPriorLogit(strength=0)
    with pytest.raises(ValueError, match="doc_buckets must be an int >= 1"):
        PopularityPriorLogit(doc_buckets=0)
