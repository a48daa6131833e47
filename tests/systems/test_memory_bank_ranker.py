"""LemurRanker with a memory bank: sampling, dedup join, masks, serving path, checkpoints, the callback."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from lemur.callbacks import MemoryBankCallback
from lemur.data import LemurDataModule
from lemur.encoders import DocumentEncoder, TransformerTextEncoder
from lemur.losses import SQDCLoss
from lemur.memory import ReplicatedMemoryBank
from lemur.ranking import FeatureConfig, MLPBackbone
from lemur.sequence import CosineSimilarityFeatures, LongerDecoder
from lemur.systems import LemurRanker
from lemur.systems.ranker import Sampling

FEATURES = FeatureConfig(token_dim=8, user_buckets=50, doc_buckets=50, cat_buckets=30)


@pytest.fixture
def datamodule(handmade_dataset: Path) -> LemurDataModule:
    dm = LemurDataModule(root=str(handmade_dataset), batch_size=32, num_workers=0)
    dm.setup("fit")
    return dm


@pytest.fixture
def batch(datamodule: LemurDataModule) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return next(iter(datamodule.train_dataloader()))


def build(seed: int = 0, **kwargs) -> LemurRanker:
    torch.manual_seed(seed)
    text = lambda types: TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, num_types=types, out_dim=24)
    args = dict(backbone=partial(MLPBackbone, hidden_dims=[16], dropout=0.0), features=FEATURES, query_encoder=text(1),
                doc_encoder=DocumentEncoder({"text": text(5)}, out_dim=24), short_history=partial(LongerDecoder, num_heads=2),
                long_history=partial(LongerDecoder, num_heads=2), memory_bank=ReplicatedMemoryBank(capacity=40, dim=24),
                similarity=CosineSimilarityFeatures(max_len=8), sqdc=SQDCLoss(temperature=10.0))
    args.update(kwargs)
    return LemurRanker(**args)


def test_full_p_q_encodes_every_row_like_the_plain_encoder(batch) -> None:
    model = build()
    model.train()
    content = model.encode(batch)
    torch.testing.assert_close(content["doc"], model.doc_encoder(batch))  # dedup + scatter == row by row
    assert float(content["encoded_rows"]) == 1.0
    assert sorted(content["fresh_ids"].tolist()) == sorted(set(batch["doc_index"].tolist()))
    # ids (4) + query + doc + short + long + similarity
    assert model.backbone.num_tokens == 4 + 2 + 2 + 1


def test_sampled_rows_use_the_bank_and_only_q_rows_train_the_encoder(batch) -> None:
    model = build(sampling=Sampling(forward=0.25, backward=0.25))
    model.train()
    everything = torch.arange(40)
    model.memory_bank.write(everything, torch.randn(40, 24), step=0)  # a warm bank
    before = model.memory_bank.table.clone()
    content = model.encode(batch)
    encoded = set(content["fresh_ids"].tolist())
    rows_encoded = torch.tensor([d in encoded for d in batch["doc_index"].tolist()])
    assert 0.25 <= float(content["encoded_rows"]) == rows_encoded.float().mean() < 1.0
    # rows whose document was not encoded carry the bank's vector (no gradient)
    torch.testing.assert_close(content["doc"][~rows_encoded], before[batch["doc_index"][~rows_encoded]])
    fresh = model.doc_encoder(batch)
    torch.testing.assert_close(content["doc"][rows_encoded], fresh[rows_encoded])
    content["doc"].sum().backward()
    assert any(p.grad is not None for p in model.doc_encoder.parameters())


def test_an_empty_bank_forces_encoding_even_at_p_zero(batch) -> None:
    model = build(sampling=Sampling(forward=0.0, backward=0.0))
    model.train()
    content = model.encode(batch)
    assert float(content["encoded_rows"]) == 1.0 and float(content["bank_hit"]) == 0.0
    assert not content["doc"].requires_grad  # q = 0: no encoder graph


def test_training_step_writes_before_reading_histories(batch) -> None:
    model = build()
    model.train()
    loss = model.training_step(batch, 0)
    loss.backward()
    bank = model.memory_bank
    assert bank.num_written() == len(set(batch["doc_index"].tolist()))
    # the dedup join: a history item that is one of this batch's documents reads its fresh vector
    content = model.encode(batch)  # same weights, same batch: the same vectors as the step wrote
    hist, mask = batch["hist_long"], batch["hist_long_mask"]
    in_batch = torch.isin(hist, batch["doc_index"]) & mask
    assert in_batch.any(), "the fixture should have re-clicked documents"
    _, _, read_mask, vectors = model._history_items(batch, "long", keep=batch["hist_long"].shape[1])
    lookup = dict(zip(content["fresh_ids"].tolist(), content["fresh_doc"]))
    for b, j in in_batch.nonzero().tolist():
        torch.testing.assert_close(vectors[b, j], lookup[int(hist[b, j])])
    assert torch.equal(read_mask, mask & bank.written(hist))  # unknown IDs are masked, not zero-filled
    stats = model.bank_stats
    assert {"staleness", "coverage_target", "coverage_long", "coverage_short", "encoded_rows"} <= stats.keys()


def test_reads_carry_no_gradient_to_history_documents(batch) -> None:
    model = build(sqdc=None, stop_gradient=False)
    model.train()
    model.memory_bank.write(torch.arange(40), torch.randn(40, 24), step=0)
    content = model.encode(batch)
    _, _, _, vectors = model._history_items(batch, "long", keep=batch["hist_long"].shape[1])
    assert not vectors.requires_grad and content["doc"].requires_grad


def test_serving_from_the_bank_skips_the_document_encoder(batch) -> None:
    model = build(serve_from_bank=True)
    model.memory_bank.write(torch.arange(40), torch.randn(40, 24), step=0)
    model.eval()
    calls = []
    model.doc_encoder.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        content = model.encode(batch)
        model.score(batch)
    assert not calls
    torch.testing.assert_close(content["doc"], model.memory_bank.table[batch["doc_index"]])


def test_bank_settings_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="memory_bank.dim=16 != model.doc_encoder.out_dim=24"):
        build(memory_bank=ReplicatedMemoryBank(capacity=40, dim=16))
    with pytest.raises(ValueError, match="set model.memory_bank"):
        build(memory_bank=None)  # similarity needs the bank
    with pytest.raises(ValueError, match="backward <= forward"):
        Sampling(forward=0.2, backward=0.5)


def _trainer(tmp_path: Path, callbacks, steps: int = 3) -> L.Trainer:
    return L.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                     default_root_dir=tmp_path, callbacks=callbacks, limit_val_batches=1, num_sanity_val_steps=0)


def test_checkpoint_restores_the_bank_bit_for_bit(datamodule, tmp_path: Path) -> None:
    model = build()
    trainer = _trainer(tmp_path, [])
    trainer.fit(model, datamodule=datamodule)
    assert model.memory_bank.num_written() > 0
    path = tmp_path / "bank.ckpt"
    trainer.save_checkpoint(path)
    restored = LemurRanker.load_from_checkpoint(path, weights_only=False)
    for name in ReplicatedMemoryBank.STATE:
        assert torch.equal(getattr(restored.memory_bank, name), getattr(model.memory_bank, name)), name


def test_too_small_a_bank_is_reported_at_fit_start(datamodule, tmp_path: Path) -> None:
    model = build(memory_bank=ReplicatedMemoryBank(capacity=10, dim=24))
    with pytest.raises(ValueError, match=r"capacity=10 is smaller than the dataset's 40 documents"):
        _trainer(tmp_path, []).fit(model, datamodule=datamodule)


def test_callback_warm_start_refresh_plot_and_export(datamodule, tmp_path: Path) -> None:
    model = build(sampling=Sampling(forward=0.2, backward=0.2))
    callback = MemoryBankCallback(warm_start=True, batch_size=16, refresh_every_n_steps=2, refresh_budget=5, export=True, output_dir=str(tmp_path / "out"))
    _trainer(tmp_path, [callback], steps=4).fit(model, datamodule=datamodule)
    assert model.memory_bank.num_written() == 40
    assert (tmp_path / "out" / "memory_bank.png").stat().st_size > 1000
    table = pq.read_table(tmp_path / "out" / "memory_bank.parquet")
    assert table.num_rows == 40 and table["written"].to_numpy().all()
    emb = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(emb, model.memory_bank.table.numpy())
    assert table["doc_id"].to_pylist() == datamodule.store.doc_ids.tolist()
    history = callback.history
    assert history["written_share"][-1][1] == 1.0
    assert history["coverage_target"] and all(v == 1.0 for _, v in history["coverage_target"])  # warm: every document is in the bank
    assert history["refresh_staleness"] and all(-1.0 <= v <= 1.0 for _, v in history["refresh_staleness"])
    assert history["staleness"] and 0.0 < history["staleness"][-1][1] <= 1.0


def test_callback_without_a_bank_says_so(datamodule, tmp_path: Path) -> None:
    model = build(memory_bank=None, similarity=None)
    with pytest.raises(ValueError, match="has no memory bank"):
        _trainer(tmp_path, [MemoryBankCallback()]).fit(model, datamodule=datamodule)


def test_history_items_equal_a_slot_by_slot_projection(batch) -> None:
    model = build()
    model.train()
    model.memory_bank.write(torch.arange(0, 40, 2), torch.randn(20, 24), step=0)  # half the documents
    table, index, mask, vectors = model._history_items(batch, "long", keep=3)
    ids = batch["hist_long"]
    expected = model.history_proj(model.memory_bank.table[ids])
    torch.testing.assert_close(table[index], expected)
    assert len(table) == len(set(ids.flatten().tolist()))  # each distinct document read and projected once
    assert torch.equal(mask, batch["hist_long_mask"] & (ids % 2 == 0))
    torch.testing.assert_close(vectors, model.memory_bank.table[ids[:, :3]])
    reads = torch.bincount(ids[batch["hist_long_mask"]], minlength=40)
    assert torch.equal(model.memory_bank.reads, reads)


def test_history_contrastive_loss_trains_the_document_encoder_and_needs_a_bank(batch) -> None:
    from lemur.losses import HistoryContrastiveLoss

    model = build(history_contrastive=HistoryContrastiveLoss(scale=5.0), history_contrastive_weight=1.0, sqdc=None)
    model.train()
    everything = torch.arange(40)
    model.memory_bank.write(everything, torch.randn(40, 24), step=0)  # histories need written entries
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)
    loss = model.training_step(batch, 0)
    assert "train/history_contrastive" in logged and float(logged["train/history_contrastive"]) > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.doc_encoder.parameters())
    with pytest.raises(ValueError, match="memory_bank"):
        build(memory_bank=None, similarity=None, history_contrastive=HistoryContrastiveLoss())
    with pytest.raises(ValueError, match="history_contrastive.init_args: skip=0 \\+ dims=100"):
        build(history_contrastive=HistoryContrastiveLoss(dims=100))


@pytest.mark.parametrize("join_gradient", [False, True])
def test_join_gradient_trains_the_encoder_through_history_entries_of_batch_documents(batch, join_gradient) -> None:
    model = build(join_gradient=join_gradient)
    model.train()
    model.memory_bank.write(torch.arange(40), torch.randn(40, 24), step=0)
    content = model.encode(batch)
    model.memory_bank.write(content["fresh_ids"], content["fresh_doc"], step=1)  # as training_step does
    table, index, mask, _ = model._history_items(batch, "long", 0, content)
    shared = torch.isin(batch["hist_long"][batch["hist_long_mask"].bool()], batch["doc_index"])
    assert shared.any()  # the batch's histories hold some of its own target documents
    # the forward values are the bank's either way (the bank already holds this step's fresh vectors) ...
    plain = model.history_proj(model.memory_bank.read(torch.unique(batch["hist_long"]))[0])
    torch.testing.assert_close(table, plain)
    # ... but only the join carries the encoder's graph
    assert table.requires_grad
    table.sum().backward()
    touched = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.doc_encoder.parameters())
    assert touched == join_gradient


def test_join_gradient_needs_a_bank() -> None:
    with pytest.raises(ValueError, match="join_gradient"):
        build(memory_bank=None, similarity=None, join_gradient=True)


def test_history_documents_are_encoded_written_and_joined_with_their_graph(handmade_dataset: Path) -> None:
    from lemur.data.datamodule import HistoryConfig

    dm = LemurDataModule(root=str(handmade_dataset), batch_size=32, num_workers=0,
                         history=HistoryConfig(short_len=16, long_len=128, encode_docs=8))
    dm.setup("fit")
    torch.manual_seed(0)
    batch = next(iter(dm.train_dataloader()))
    extra = batch["hist_doc_index"]
    assert len(extra)
    model = build(join_gradient=True)
    model.train()
    content = model.encode(batch)
    assert set(extra.tolist()) <= set(content["fresh_ids"].tolist())  # written with the targets
    at = torch.searchsorted(content["batch_ids"], extra)
    own = model.doc_encoder({k: batch["hist_" + k] for k in ("doc_tokens", "doc_types", "doc_mask")})
    torch.testing.assert_close(content["batch_doc"][at], own)
    assert content["batch_doc"][at].requires_grad
    # evaluation never encodes them
    model.eval()
    with torch.no_grad():
        assert set(model.encode(batch)["batch_ids"].tolist()) == set(batch["doc_index"].tolist())


def test_similarity_projection_width_is_checked() -> None:
    with pytest.raises(ValueError, match="similarity.init_args.input_dim=10"):
        build(similarity=CosineSimilarityFeatures(max_len=8, proj_dim=4, input_dim=10))
    build(similarity=CosineSimilarityFeatures(max_len=8, proj_dim=4, input_dim=24))


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_history_logit_adds_its_term_to_the_backbone_and_trains_the_encoder(batch, stop_gradient) -> None:
    from lemur.sequence import HistorySimilarityLogit

    model = build(history_logit=HistorySimilarityLogit(init_scale=3.0), sqdc=None, stop_gradient=stop_gradient)
    model.train()
    model.memory_bank.write(torch.arange(40), torch.randn(40, 24), step=0)  # histories need written entries
    content = model.encode(batch)
    logits = model.logits(batch, content)
    plain = model.backbone(model.feature_tokens(batch, content))
    mask = batch["hist_long_mask"].bool()
    term = model.history_logit(content["doc"], model.memory_bank.table, batch["hist_long"], mask)
    torch.testing.assert_close(logits, plain + term)
    assert term.abs().sum() > 0
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)
    model.training_step(batch, 0).backward()
    assert float(logged["train/history_logit_scale"]) == 3.0
    assert model.history_logit.scale.grad is not None
    # the term reaches the document encoder unless stop_gradient cuts every ranker path to it
    touched = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.doc_encoder.parameters())
    assert touched != stop_gradient
    with pytest.raises(ValueError, match="history_logit .*needs model.memory_bank"):
        build(memory_bank=None, similarity=None, history_logit=HistorySimilarityLogit())
    with pytest.raises(ValueError, match="history_logit.init_args.input_dim=16 must equal"):
        build(history_logit=HistorySimilarityLogit(proj_dim=8, input_dim=16))


def test_reconstruction_loss_trains_the_document_encoder_and_checks_its_width(batch) -> None:
    from lemur.losses import WordBagReconstructionLoss

    vocab = int(batch["doc_tokens"].max()) + 1
    model = build(reconstruction=WordBagReconstructionLoss(input_dim=24, vocab_size=vocab), reconstruction_weight=1.0,
                  sqdc=None, stop_gradient=True)  # stop_gradient: only the reconstruction reaches the encoder
    model.train()
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)
    model.training_step(batch, 0).backward()
    assert float(logged["train/reconstruction"]) > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.doc_encoder.parameters())
    assert model.reconstruction.decoder.weight.grad is not None
    with pytest.raises(ValueError, match="reconstruction.init_args.input_dim=16 must equal model.doc_encoder.out_dim=24"):
        build(reconstruction=WordBagReconstructionLoss(input_dim=16))
    with pytest.raises(ValueError, match="reconstruction_weight must be >= 0"):
        build(reconstruction=WordBagReconstructionLoss(input_dim=24), reconstruction_weight=-1.0)
