"""LemurDataModule on the hand-made dataset: the day split, the batch contract of the module
docstring (keys, shapes, dtypes, masks), images, the tokenisation cache, workers, bad settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import lemur.data.datamodule as datamodule_module
from conftest import make_tables, write_dataset
from lemur.data import HistoryConfig, LemurDataModule, SchemaError, TokenizerConfig
from lemur.data.datamodule import IMAGE_MEAN, IMAGE_STD, cold_documents

FIELDS = {"title": 6, "ocr": 8, "asr": 3, "cover_text": 2}
CLS, SEP = 101, 102  # the packaged all-MiniLM-L6-v2 (BERT uncased) vocabulary


def make_dm(root: Path, **kwargs) -> LemurDataModule:
    settings = dict(
        root=str(root),
        batch_size=8,
        eval_batch_size=50,
        num_workers=0,
        history=HistoryConfig(short_len=3, long_len=6),
        tokenizer=TokenizerConfig(fields=dict(FIELDS), query_len=4),
    )
    settings.update(kwargs)
    dm = LemurDataModule(**settings)
    dm.setup("fit")
    return dm


def first_batch(loader) -> dict[str, torch.Tensor]:
    return next(iter(loader))


@pytest.fixture
def dm(handmade_dataset: Path) -> LemurDataModule:
    return make_dm(handmade_dataset)


@pytest.fixture
def events(handmade_dataset: Path) -> dict:
    return pq.read_table(handmade_dataset / "events.parquet").to_pydict()


# ------------------------------------------------------------------------------ split
def test_split_by_day(dm: LemurDataModule, events: dict) -> None:
    day = np.asarray(events["day"])
    assert dm.days == {"train": [0, 1], "val": [2], "test": [3]}
    all_rows = np.concatenate([dm.splits[k] for k in ("train", "val", "test")])
    assert sorted(all_rows.tolist()) == list(range(len(day))), "splits must partition the rows"
    for split, days in dm.days.items():
        assert set(day[dm.splits[split]].tolist()) == set(days)
    assert max(dm.days["train"]) < min(dm.days["val"]) <= max(dm.days["val"]) < min(dm.days["test"])
    assert dm.days["test"] == [int(day.max())]
    d = dm.describe()
    assert d["rows"] == {k: len(v) for k, v in dm.splits.items()}
    assert d["num_docs"] == 40 and d["cat_columns"] == ["cat_hour"] and d["dense_columns"] == ["dense_position"]
    assert d["cat_cardinality"] == [max(events["cat_hour"]) + 1]


def test_split_with_more_held_out_days(handmade_dataset: Path) -> None:
    dm = make_dm(handmade_dataset, val_days=2, test_days=1)
    assert dm.days == {"train": [0], "val": [1, 2], "test": [3]}
    dm = make_dm(handmade_dataset, val_days=0, test_days=2)
    assert dm.days == {"train": [0, 1], "val": [], "test": [2, 3]}
    assert len(dm.splits["val"]) == 0


def test_cold_documents_draw() -> None:
    doc = np.array([5, 6, 7, 8, 5, 9, 6, 7])
    day = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # test day 3; documents before it: 5, 6, 7, 8, 9
    held, keep = cold_documents(doc, day, test_days=1, share=0.4, seed=0)
    assert len(held) == 2 and set(held.tolist()) <= {5, 6, 7, 8, 9} and held.tolist() == sorted(held.tolist())
    assert keep.tolist() == [not (d in held and t < 3) for d, t in zip(doc, day)]  # test rows always kept
    again, _ = cold_documents(doc, day, test_days=1, share=0.4, seed=0)
    assert again.tolist() == held.tolist()
    draws = {tuple(cold_documents(doc, day, 1, 0.4, seed)[0].tolist()) for seed in range(20)}
    assert len(draws) > 1  # the seed draws
    assert len(cold_documents(doc, day, 1, 0.0, 0)[0]) == 0
    with pytest.raises(ValueError, match="cold_docs"):
        cold_documents(doc, day, 1, 1.0, 0)


def test_cold_docs_leave_no_trace_before_the_test_days(handmade_dataset: Path, events: dict) -> None:
    plain = make_dm(handmade_dataset)
    dm = make_dm(handmade_dataset, cold_docs=0.25, cold_docs_seed=3)
    held, _ = cold_documents(np.asarray(events["doc_id"]), np.asarray(events["day"]), 1, 0.25, 3)
    assert dm.cold_doc_ids.tolist() == held.tolist() and len(held) > 0
    assert dm.days == plain.days  # the split by day does not move
    doc_ids = pq.read_table(handmade_dataset / "docs.parquet")["doc_id"].to_numpy()
    held_index = set(np.flatnonzero(np.isin(doc_ids, held)).tolist())
    seen_before_test = set()
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for batch in loader:
            assert not set(batch["doc_index"].tolist()) & held_index, "a held-out document trains or validates"
            items = batch["hist_long"][batch["hist_long_mask"]].tolist()
            assert not set(items) & held_index, "a held-out document is in a history before the test days"
            seen_before_test |= set(batch["doc_index"].tolist())
    rows = lambda m: sorted(  # noqa: E731
        zip(*(torch.cat([b[k] for b in m.test_dataloader()]).tolist() for k in ("session_id", "doc_id", "label")))
    )
    assert rows(dm) == rows(plain)  # the test rows are untouched
    plain_before = {
        i
        for loader in (plain.train_dataloader(), plain.val_dataloader())
        for b in loader
        for i in b["doc_index"].tolist()
    }
    assert seen_before_test == plain_before - held_index
    with pytest.raises(ValueError, match="data.cold_docs must be in"):
        LemurDataModule(root=str(handmade_dataset), cold_docs=1.0)


# ------------------------------------------------------------------------------ batch contract
def test_batch_keys_shapes_dtypes(dm: LemurDataModule) -> None:
    for batch, bsz in (
        (first_batch(dm.train_dataloader()), 8),
        (first_batch(dm.val_dataloader()), 50),
        (first_batch(dm.test_dataloader()), 50),
    ):
        expected = {
            "label",
            "user_id",
            "session_id",
            "doc_index",
            "doc_id",
            "is_new_doc",
            "doc_tokens",
            "doc_types",
            "doc_mask",
            "query_tokens",
            "query_mask",
            "hist_long",
            "hist_long_mask",
            "hist_short",
            "hist_short_mask",
            "cat",
            "dense",
        }
        assert set(batch) == expected  # no images unless image_size is set
        B = batch["label"].shape[0]
        assert B == min(bsz, 72)  # 72 rows per day in the hand-made data
        dtypes = {
            "label": torch.float32,
            "user_id": torch.int64,
            "session_id": torch.int64,
            "doc_index": torch.int64,
            "is_new_doc": torch.bool,
            "doc_tokens": torch.int64,
            "doc_types": torch.int64,
            "doc_mask": torch.bool,
            "query_tokens": torch.int64,
            "query_mask": torch.bool,
            "hist_long": torch.int64,
            "hist_long_mask": torch.bool,
            "hist_short": torch.int64,
            "hist_short_mask": torch.bool,
            "cat": torch.int64,
            "dense": torch.float32,
        }
        for key, dtype in dtypes.items():
            assert batch[key].dtype == dtype, key
        for key in ("label", "user_id", "session_id", "doc_index", "is_new_doc"):
            assert batch[key].shape == (B,), key
        Td = batch["doc_tokens"].shape[1]
        assert batch["doc_types"].shape == batch["doc_mask"].shape == (B, Td)
        assert Td <= 1 + sum(FIELDS.values()) + len(FIELDS)
        Tq = batch["query_tokens"].shape[1]
        assert batch["query_mask"].shape == (B, Tq) and Tq <= 1 + 4
        Ll, Ls = batch["hist_long"].shape[1], batch["hist_short"].shape[1]
        assert batch["hist_long_mask"].shape == (B, Ll) and batch["hist_short_mask"].shape == (B, Ls)
        assert 1 <= Ll <= 6 and Ls == min(3, Ll)
        assert batch["cat"].shape == (B, 1) and batch["dense"].shape == (B, 1)
        # Trimmed widths: no all-padding column in the batch (except a forced width of 1).
        for mask in ("doc_mask", "query_mask", "hist_long_mask"):
            if batch[mask].shape[1] > 1 and batch[mask].any():
                assert batch[mask][:, -1].any(), f"{mask}: last column is padding in every row"


def test_batch_values_match_events(dm: LemurDataModule, handmade_dataset: Path, events: dict) -> None:
    docs = pq.read_table(handmade_dataset / "docs.parquet").to_pydict()
    dense_of = {d: i for i, d in enumerate(docs["doc_id"])}
    rows = dm.splits["val"][:50]
    batch = first_batch(dm.val_dataloader())
    pick = lambda col: np.asarray(events[col])[rows]  # noqa: E731
    np.testing.assert_array_equal(batch["label"].numpy(), pick("label").astype(np.float32))
    np.testing.assert_array_equal(batch["user_id"].numpy(), pick("user_id"))
    np.testing.assert_array_equal(batch["session_id"].numpy(), pick("session_id"))
    np.testing.assert_array_equal(batch["doc_index"].numpy(), [dense_of[d] for d in pick("doc_id")])
    np.testing.assert_array_equal(batch["cat"][:, 0].numpy(), pick("cat_hour"))
    np.testing.assert_array_equal(batch["dense"][:, 0].numpy(), pick("dense_position"))
    publish = np.asarray(docs["publish_day"])[batch["doc_index"].numpy()]
    np.testing.assert_array_equal(batch["is_new_doc"].numpy(), publish == pick("day"))
    assert batch["is_new_doc"].any() and not batch["is_new_doc"].all()


def test_token_masks_and_padding(dm: LemurDataModule) -> None:
    for batch in (first_batch(dm.train_dataloader()), first_batch(dm.test_dataloader())):
        mask, tokens, types = batch["doc_mask"], batch["doc_tokens"], batch["doc_types"]
        assert mask[:, 0].all() and (tokens[:, 0] == CLS).all() and (types[:, 0] == 0).all()
        assert (tokens[~mask] == 0).all()
        # Real tokens first, then padding.
        assert (mask.int().diff(dim=1) <= 0).all()
        qmask, qtokens = batch["query_mask"], batch["query_tokens"]
        assert qmask[:, 0].all() and (qtokens[:, 0] == CLS).all()
        assert (qtokens[~qmask] == 0).all() and (qmask.int().diff(dim=1) <= 0).all()
        assert (qmask.sum(1) >= 2).all()  # every hand-made query has two words
        for key in ("hist_long", "hist_short"):
            assert (batch[key][~batch[f"{key}_mask"]] == 0).all(), key
            assert (batch[f"{key}_mask"].int().diff(dim=1) <= 0).all(), key
        Ls = batch["hist_short"].shape[1]
        assert batch["hist_short"].equal(batch["hist_long"][:, :Ls])
        assert batch["hist_short_mask"].equal(batch["hist_long_mask"][:, :Ls])


def test_doc_types_follow_the_fields(dm: LemurDataModule, handmade_dataset: Path) -> None:
    docs = pq.read_table(handmade_dataset / "docs.parquet").to_pydict()
    batch = dm.store.batch(np.arange(len(dm.store.label)))  # every row, every document
    n_fields = len(FIELDS)
    for k in range(batch["label"].shape[0]):
        m = batch["doc_mask"][k]
        types, tokens = batch["doc_types"][k][m], batch["doc_tokens"][k][m]
        assert (types.diff() >= 0).all(), "types must not decrease along real tokens"
        assert types.unique().tolist() == list(range(n_fields + 1)), "CLS + every field (an empty one keeps its SEP)"
        # Each field ends with exactly one SEP of that field's type, and stays within its budget.
        sep = tokens == SEP
        assert sep.sum() == n_fields and types[sep].tolist() == list(range(1, n_fields + 1))
        for t, (name, budget) in enumerate(FIELDS.items(), start=1):
            n_tokens = int((types == t).sum()) - 1
            assert 0 <= n_tokens <= budget, name
            if name == "asr" and docs["asr"][int(batch["doc_index"][k])] is None:
                assert n_tokens == 0, "a null field is an empty field"
            if name == "cover_text":
                assert n_tokens == 1, "'coffee' is one token"


def test_dataloaders_cover_each_split_once(dm: LemurDataModule) -> None:
    for split in ("val", "test"):
        labels = torch.cat([b["label"] for b in getattr(dm, f"{split}_dataloader")()])
        assert len(labels) == len(dm.splits[split])
    sessions = torch.cat([b["session_id"] for b in dm.train_dataloader()])
    assert sorted(sessions.tolist()) == sorted(np.asarray(dm.store.session_id)[dm.splits["train"]].tolist())


# ------------------------------------------------------------------------------ images
def test_images(handmade_dataset: Path) -> None:
    dm = make_dm(handmade_dataset, image_size=16)
    batch = dm.store.batch(np.arange(len(dm.store.label)))
    B = batch["label"].shape[0]
    image, present = batch["doc_image"], batch["doc_image_mask"]
    assert image.shape == (B, 3, 16, 16) and image.dtype == torch.float32
    assert present.shape == (B,) and present.dtype == torch.bool
    doc = batch["doc_index"].numpy()
    np.testing.assert_array_equal(present.numpy(), doc % 7 != 0)  # conftest: every 7th document has no image
    assert (image[~present] == 0).all()
    # A present image is the conftest colour, normalised with the ImageNet statistics.
    k = int(np.flatnonzero(doc % 7 != 0)[0])
    i = int(doc[k])
    rgb = np.array([i * 5 % 256, 100, 50], np.float32)[:, None, None] / 255.0
    expected = np.broadcast_to((rgb - IMAGE_MEAN) / IMAGE_STD, (3, 16, 16))
    np.testing.assert_allclose(image[k].numpy(), expected, atol=1e-5)
    loader_batch = first_batch(dm.train_dataloader())
    assert loader_batch["doc_image"].shape[1:] == (3, 16, 16)


def test_images_are_resized_and_bad_bytes_masked(tmp_path: Path) -> None:
    docs, events = make_tables()
    images = docs["image"].to_pylist()
    images[1] = b"not an image"
    docs = docs.set_column(docs.column_names.index("image"), "image", pa.array(images, pa.binary()))
    root = write_dataset(tmp_path / "ds", docs, events)
    dm = make_dm(root, image_size=8)
    batch = dm.store.batch(np.arange(len(dm.store.label)))
    assert batch["doc_image"].shape[1:] == (3, 8, 8)
    doc = batch["doc_index"].numpy()
    np.testing.assert_array_equal(batch["doc_image_mask"].numpy(), (doc % 7 != 0) & (doc != 1))


# ------------------------------------------------------------------------------ tokenisation cache
def _cache_files(root: Path) -> list[Path]:
    return sorted((root / ".cache").glob("*.npz"))


def _raise(*args, **kwargs):
    raise AssertionError("tokenised again although the cache is valid")


def test_cache_is_written_and_reused(handmade_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not (handmade_dataset / ".cache").exists()
    dm1 = make_dm(handmade_dataset)
    files = _cache_files(handmade_dataset)
    assert [f.name.split("-")[0] for f in files] == ["docs", "queries"]
    assert not list((handmade_dataset / ".cache").glob("*.tmp*")), "no half-written cache left behind"
    monkeypatch.setattr(datamodule_module, "tokenize_documents", _raise)
    monkeypatch.setattr(datamodule_module, "tokenize_queries", _raise)
    monkeypatch.setattr(datamodule_module, "load_tokenizer", _raise)
    dm2 = make_dm(handmade_dataset)
    assert _cache_files(handmade_dataset) == files
    b1, b2 = first_batch(dm1.test_dataloader()), first_batch(dm2.test_dataloader())
    assert b1.keys() == b2.keys()
    for key in b1:
        assert b1[key].equal(b2[key]), key


def test_cache_written_by_two_writers_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DDP ranks set up together: another writer finishes the same cache file between this writer's save and
    its rename. Both must succeed and leave one complete file, no temporary one."""
    from lemur.data import tokenize

    result = tokenize.TokenizedText(np.ones((2, 3), np.int64), np.zeros((2, 3), np.int64), np.ones((2, 3), bool))
    real_savez, nested = np.savez, []

    def savez_then_another_writer(file, **arrays):
        real_savez(file, **arrays)
        if not nested:
            nested.append(1)
            tokenize.cached(tmp_path, "docs", {"k": 1}, lambda: result)  # the other rank, start to finish

    monkeypatch.setattr(tokenize.np, "savez", savez_then_another_writer)
    out = tokenize.cached(tmp_path, "docs", {"k": 1}, lambda: result)
    assert nested and np.array_equal(out.ids, result.ids)
    [path] = tmp_path.iterdir()
    assert path.suffix == ".npz" and ".tmp" not in path.name
    monkeypatch.setattr(tokenize.np, "savez", real_savez)
    assert np.array_equal(tokenize.cached(tmp_path, "docs", {"k": 1}, lambda: None).ids, result.ids)  # read back


def test_cache_depends_on_the_token_budgets(handmade_dataset: Path) -> None:
    make_dm(handmade_dataset)
    n = len(_cache_files(handmade_dataset))
    dm = make_dm(handmade_dataset, tokenizer=TokenizerConfig(fields={"title": 2, "ocr": 2}, query_len=2))
    assert len(_cache_files(handmade_dataset)) == n + 2
    batch = first_batch(dm.test_dataloader())
    assert batch["doc_mask"].sum(1).max() <= 1 + 2 + 1 + 2 + 1
    assert batch["query_mask"].sum(1).max() <= 3


def test_cache_is_invalidated_when_docs_change(tmp_path: Path) -> None:
    docs, events = make_tables()
    root = write_dataset(tmp_path / "ds", docs, events)
    before = first_batch(make_dm(root).test_dataloader())
    titles = ["zebra " * 5] * docs.num_rows
    write_dataset(root, docs.set_column(docs.column_names.index("title"), "title", pa.array(titles)), events)
    after = first_batch(make_dm(root).test_dataloader())
    assert not before["doc_tokens"].equal(after["doc_tokens"])
    # 'zebra' x5 + SEP (within the budget of 6)
    assert after["doc_types"][0][after["doc_mask"][0]].tolist().count(1) == 5 + 1


def test_query_cache_is_invalidated_when_events_change(tmp_path: Path) -> None:
    docs, events = make_tables()
    root = write_dataset(tmp_path / "ds", docs, events)
    make_dm(root)
    queries = events["query"].to_pylist()
    counts = {q: queries.count(q) for q in queries}
    distinct = sorted(counts)
    # Replace a query that occurs once and is not among the first three by a brand-new text:
    # same number of distinct queries, same first three.
    row = next(i for i, q in enumerate(queries) if counts[q] == 1 and q not in distinct[:3])
    queries[row] = "zebra zebra"
    events = events.set_column(events.column_names.index("query"), "query", pa.array(queries))
    pq.write_table(events, root / "events.parquet")  # docs.parquet untouched
    dm = make_dm(root)
    batch = dm.store.batch(np.array([row]))
    zebra = 29145  # 'zebra' in the BERT uncased vocabulary
    assert batch["query_tokens"][0, 1:3].tolist() == [zebra, zebra]


# ------------------------------------------------------------------------------ workers
def test_workers_give_the_same_batches(handmade_dataset: Path) -> None:
    b0 = first_batch(make_dm(handmade_dataset, num_workers=0, image_size=8).val_dataloader())
    b1 = first_batch(make_dm(handmade_dataset, num_workers=1, image_size=8).val_dataloader())
    assert b0.keys() == b1.keys()
    for key in b0:
        assert b0[key].equal(b1[key]), key


# ------------------------------------------------------------------------------ bad settings
@pytest.mark.parametrize(
    "setting, value",
    [
        ("batch_size", 0),
        ("eval_batch_size", -1),
        ("num_workers", -1),
        ("val_days", -1),
        ("test_days", -2),
        ("image_size", 4),
    ],
)
def test_bad_settings_fail_at_construction(handmade_dataset: Path, setting: str, value: int) -> None:
    with pytest.raises(ValueError, match=rf"data\.{setting}"):
        LemurDataModule(root=str(handmade_dataset), **{setting: value})


@pytest.mark.parametrize("val_days, test_days", [(2, 2), (1, 3), (0, 4), (3, 3)])
def test_too_few_days(handmade_dataset: Path, val_days: int, test_days: int) -> None:
    dm = LemurDataModule(
        root=str(handmade_dataset),
        num_workers=0,
        val_days=val_days,
        test_days=test_days,
        tokenizer=TokenizerConfig(fields=dict(FIELDS), query_len=4),
    )
    with pytest.raises(SchemaError, match="val_days \\+ test_days") as info:
        dm.setup("fit")
    assert "4 distinct days" in str(info.value)


def test_bad_history_and_tokenizer_configs() -> None:
    with pytest.raises(ValueError, match="short_len"):
        HistoryConfig(short_len=5, long_len=2)
    with pytest.raises(ValueError, match="long_len"):
        HistoryConfig(short_len=0, long_len=-1)
    with pytest.raises(ValueError, match="fields"):
        TokenizerConfig(fields={})
    with pytest.raises(ValueError, match="title"):
        TokenizerConfig(fields={"title": 0})
    with pytest.raises(ValueError, match="query_len"):
        TokenizerConfig(query_len=0)


def test_bad_dataset_fails_in_setup(tmp_path: Path) -> None:
    dm = LemurDataModule(root=str(tmp_path / "missing"), num_workers=0)
    with pytest.raises(SchemaError, match="missing"):
        dm.setup("fit")


def test_setup_is_idempotent(dm: LemurDataModule) -> None:
    store = dm.store
    dm.setup("test")
    assert dm.store is store


def test_history_config_is_recorded_in_hparams(dm: LemurDataModule) -> None:
    assert dm.hparams["history"] == {"short_len": 3, "long_len": 6, "impressions_len": 0}
    assert dm.hparams["tokenizer"]["fields"] == FIELDS


def test_history_config_reaches_the_logged_hparams(dm: LemurDataModule) -> None:
    assert dm.hparams_initial["history"] == {"short_len": 3, "long_len": 6, "impressions_len": 0}
    assert dm.hparams_initial["tokenizer"]["fields"] == FIELDS


def test_batches_carry_the_raw_doc_id(handmade_dataset: Path) -> None:
    dm = LemurDataModule(root=str(handmade_dataset), batch_size=8, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    doc_ids = pq.read_table(handmade_dataset / "docs.parquet")["doc_id"].to_numpy()
    assert (batch["doc_id"].numpy() == doc_ids[batch["doc_index"].numpy()]).all()
