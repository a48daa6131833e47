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
    text = lambda types: TransformerTextEncoder(
        num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, num_types=types, out_dim=24
    )
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
    model = build(sqdc=None)
    model.train()
    model.memory_bank.write(torch.arange(40), torch.randn(40, 24), step=0)
    content = model.encode(batch)
    _, _, _, vectors = model._history_items(batch, "long", keep=batch["hist_long"].shape[1])
    assert not vectors.requires_grad and content["doc"].requires_grad


def test_serving_from_the_bank_skips_the_document_encoder(batch) -> None:
    model = build(sampling=Sampling(serve_from_bank=True))
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
    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )


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
    callback = MemoryBankCallback(
        warm_start=True,
        batch_size=16,
        refresh_every_n_steps=2,
        refresh_budget=5,
        export=True,
        output_dir=str(tmp_path / "out"),
    )
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
    # warm: every document is in the bank
    assert history["coverage_target"] and all(v == 1.0 for _, v in history["coverage_target"])
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


def test_callback_encodes_in_eval_mode_and_restores_training(datamodule, tmp_path: Path) -> None:
    """Warm start and mid-training refreshes write evaluation-mode vectors (no dropout), then training goes on
    in training mode."""
    model = build(sampling=Sampling(forward=0.2, backward=0.2))
    modes: list[tuple[bool, bool]] = []
    encode = model.document_vectors

    def probe(batch):
        modes.append((model.training, model.doc_encoder.training))
        return encode(batch)

    model.document_vectors = probe
    seen_in_steps: list[bool] = []

    class StepProbe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen_in_steps.append(pl_module.training)

    callback = MemoryBankCallback(warm_start=True, batch_size=16, refresh_every_n_steps=2, refresh_budget=5)
    _trainer(tmp_path, [callback, StepProbe()], steps=4).fit(model, datamodule=datamodule)
    assert len(modes) > 3  # the warm start's batches and at least one refresh
    assert all(m == (False, False) for m in modes), modes
    assert seen_in_steps and all(seen_in_steps)
