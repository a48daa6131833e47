"""HistoryIndex: no leakage. Every history item is an earlier click (strictly smaller
timestamp) of the same user, most recent first, checked against a brute-force loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lemur.data import HistoryConfig, LemurDataModule
from lemur.data.history import HistoryIndex


def random_events(seed: int, n_users: int = 7, n_sessions: int = 60, max_rows: int = 6, click_rate: float = 0.5):
    """Shuffled events: sessions share one timestamp; some sessions of different users and
    even of the same user share a timestamp; doc indices repeat."""
    rng = np.random.default_rng(seed)
    user, ts, doc, label, session = [], [], [], [], []
    for s in range(n_sessions):
        u = int(rng.integers(n_users))
        t = int(rng.integers(0, 25)) * 10  # few distinct times -> many ties across sessions
        k = int(rng.integers(1, max_rows + 1))
        user += [u * 1_000_003 + 17] * k  # large, non-contiguous user IDs
        ts += [t] * k
        doc += rng.integers(0, 30, k).tolist()
        label += (rng.random(k) < click_rate).astype(int).tolist()
        session += [s] * k
    order = rng.permutation(len(user))
    return tuple(np.asarray(a, np.int64)[order] for a in (user, ts, doc, label, session))


def brute_force(user, ts, doc, label, row: int) -> list[int]:
    """Clicks of ``row``'s user strictly before its timestamp, most recent first.
    Clicks sharing a timestamp count as more recent the later their row (stable order)."""
    earlier = [j for j in range(len(user)) if user[j] == user[row] and label[j] == 1 and ts[j] < ts[row]]
    earlier.sort(key=lambda j: (ts[j], j), reverse=True)
    return [int(doc[j]) for j in earlier]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_len", [0, 1, 3, 8, 1000])
def test_gather_matches_brute_force(seed: int, max_len: int) -> None:
    user, ts, doc, label, _ = random_events(seed)
    index = HistoryIndex.build(user, ts, doc, label)
    rows = np.arange(len(user))
    pad = -7
    items, mask = index.gather(rows, max_len, pad=pad)
    assert items.shape == mask.shape == (len(rows), max_len)
    assert items.dtype == np.int64 and mask.dtype == bool
    for r in rows:
        full = brute_force(user, ts, doc, label, r)
        expected = full[:max_len]
        n = len(expected)
        assert index.lengths(np.array([r]))[0] == len(full)
        assert items[r, :n].tolist() == expected, f"row {r}"
        assert mask[r, :n].all() and not mask[r, n:].any(), f"row {r}"
        assert (items[r, n:] == pad).all(), f"row {r}"


@pytest.mark.parametrize("seed", range(3))
def test_no_leakage_properties(seed: int) -> None:
    user, ts, doc, label, session = random_events(seed, click_rate=0.7)
    # Give every row a distinct doc so an item identifies the click it came from.
    doc = np.arange(len(user), dtype=np.int64) + 100
    index = HistoryIndex.build(user, ts, doc, label)
    items, mask = index.gather(np.arange(len(user)), 10_000)
    row_of_doc = {int(d): j for j, d in enumerate(doc)}
    for r in range(len(user)):
        got = [row_of_doc[int(d)] for d in items[r][mask[r]]]
        for j in got:
            assert label[j] == 1, "history holds a non-click"
            assert user[j] == user[r], "history holds another user's click"
            assert ts[j] < ts[r], "history holds a click at or after the row's time"
            assert session[j] != session[r], "history holds a click of the row's own session"
        times = [ts[j] for j in got]
        assert times == sorted(times, reverse=True), "not most recent first"
        # Complete: every earlier click of the user is there.
        assert len(got) == sum(1 for j in range(len(user)) if user[j] == user[r] and label[j] == 1 and ts[j] < ts[r])


def test_first_row_of_each_user_is_empty() -> None:
    user, ts, doc, label, _ = random_events(11)
    index = HistoryIndex.build(user, ts, doc, label)
    for u in np.unique(user):
        first_time = ts[user == u].min()
        rows = np.flatnonzero((user == u) & (ts == first_time))
        items, mask = index.gather(rows, 4, pad=0)
        assert not mask.any() and (items == 0).all()
        assert (index.lengths(rows) == 0).all()


def test_same_session_never_sees_itself() -> None:
    # One user, one session of 5 rows, all clicked, at the same time: nobody sees anything.
    user = np.full(5, 3)
    ts = np.full(5, 100)
    doc = np.arange(5)
    label = np.ones(5, np.int64)
    index = HistoryIndex.build(user, ts, doc, label)
    _, mask = index.gather(np.arange(5), 8)
    assert not mask.any()
    # A later session sees all five, most recent (= last row among ties) first.
    index = HistoryIndex.build(np.full(6, 3), np.array([100] * 5 + [101]), np.arange(6), np.array([1] * 5 + [0]))
    items, mask = index.gather(np.array([5]), 8, pad=-1)
    assert items[0].tolist() == [4, 3, 2, 1, 0, -1, -1, -1]
    assert mask[0].tolist() == [True] * 5 + [False] * 3


def test_no_clicks_at_all() -> None:
    user, ts, doc, label, _ = random_events(2)
    index = HistoryIndex.build(user, ts, doc, np.zeros_like(label))
    items, mask = index.gather(np.arange(len(user)), 5, pad=9)
    assert not mask.any() and (items == 9).all()


def test_gather_subset_and_order_of_rows() -> None:
    user, ts, doc, label, _ = random_events(5)
    index = HistoryIndex.build(user, ts, doc, label)
    all_items, all_mask = index.gather(np.arange(len(user)), 6)
    rows = np.array([9, 3, 3, 40, 0])
    items, mask = index.gather(rows, 6)
    np.testing.assert_array_equal(items, all_items[rows])
    np.testing.assert_array_equal(mask, all_mask[rows])


# ------------------------------------------------------------------------------ through the DataModule
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_datamodule_batches_hold_only_earlier_clicks(handmade_dataset: Path, split: str) -> None:
    import pyarrow.parquet as pq

    long_len, short_len = 5, 2
    dm = LemurDataModule(
        root=str(handmade_dataset),
        batch_size=16,
        eval_batch_size=1000,
        num_workers=0,
        history=HistoryConfig(short_len=short_len, long_len=long_len),
    )
    dm.setup("fit")
    docs = pq.read_table(handmade_dataset / "docs.parquet")
    ev = pq.read_table(handmade_dataset / "events.parquet").to_pydict()
    dense_of = {d: i for i, d in enumerate(docs["doc_id"].to_pylist())}
    user, ts, label = np.array(ev["user_id"]), np.array(ev["timestamp"]), np.array(ev["label"])
    doc = np.array([dense_of[d] for d in ev["doc_id"]])

    rows = dm.splits[split]
    batch = dm.store.batch(rows)  # what every loader calls, here on the whole split
    if split != "train":  # the unshuffled loader yields the split's rows in order
        first = next(iter(getattr(dm, f"{split}_dataloader")()))
        for key, value in first.items():
            assert value.equal(batch[key]), key
    np.testing.assert_array_equal(batch["user_id"].numpy(), user[rows])
    hist, hmask = batch["hist_long"].numpy(), batch["hist_long_mask"].numpy()
    assert hist.shape[1] <= long_len
    seen = 0
    for k, r in enumerate(rows):
        clicks = {(int(doc[j]), int(ts[j])) for j in range(len(user)) if user[j] == user[r] and label[j] == 1}
        for d in hist[k][hmask[k]]:
            times = [t for dd, t in clicks if dd == d]
            assert times and min(times) < ts[r], f"row {r}: doc {d} was not clicked by the user before t={ts[r]}"
            seen += 1
        expected = brute_force(user, ts, doc, label, r)[:long_len]
        assert hist[k][hmask[k]].tolist() == expected
        np.testing.assert_array_equal(batch["hist_short"][k].numpy(), hist[k, :short_len])
    if split != "train":
        assert seen > 0, "the check is vacuous: no history at all"


# ------------------------------------------------------------------------------ impression histories
def brute_force_impressions(user, ts, doc, label, row: int) -> list[tuple[int, int]]:
    """Every earlier event (clicked or not) of ``row``'s user, most recent first, as (doc, label)."""
    earlier = [j for j in range(len(user)) if user[j] == user[row] and ts[j] < ts[row]]
    earlier.sort(key=lambda j: (ts[j], j), reverse=True)
    return [(int(doc[j]), int(label[j])) for j in earlier]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_len", [0, 1, 5, 1000])
def test_impressions_match_brute_force(seed: int, max_len: int) -> None:
    user, ts, doc, label, _ = random_events(seed, click_rate=0.4)
    index = HistoryIndex.build(user, ts, doc, label, impressions=True)
    rows = np.arange(len(user))
    items, mask = index.gather(rows, max_len, pad=-3)
    labels = index.gather_labels(rows, max_len)
    assert labels.shape == items.shape and labels.dtype == np.int64
    for r in rows:
        full = brute_force_impressions(user, ts, doc, label, r)
        expected = full[:max_len]
        n = len(expected)
        assert index.lengths(np.array([r]))[0] == len(full)
        assert list(zip(items[r, :n].tolist(), labels[r, :n].tolist())) == expected, f"row {r}"
        assert mask[r, :n].all() and not mask[r, n:].any()
        assert (items[r, n:] == -3).all() and (labels[r, n:] == 0).all()
    if max_len:
        assert (labels[mask] == 0).any() and (labels[mask] == 1).any(), "vacuous: need both labels in histories"


def test_impressions_never_leak_the_row_or_its_session() -> None:
    user, ts, doc, label, session = random_events(7, click_rate=0.5)
    doc = np.arange(len(user), dtype=np.int64) + 100  # a document identifies its row
    index = HistoryIndex.build(user, ts, doc, label, impressions=True)
    items, mask = index.gather(np.arange(len(user)), 10_000)
    labels = index.gather_labels(np.arange(len(user)), 10_000)
    for r in range(len(user)):
        for d, lab in zip(items[r][mask[r]].tolist(), labels[r][mask[r]].tolist()):
            j = d - 100
            assert user[j] == user[r] and ts[j] < ts[r] and session[j] != session[r]
            assert lab == label[j], "an impression carries another event's label"


def test_click_index_has_no_labels() -> None:
    user, ts, doc, label, _ = random_events(1)
    with pytest.raises(ValueError, match="clicks only"):
        HistoryIndex.build(user, ts, doc, label).gather_labels(np.arange(3), 4)


def test_impressions_len_must_be_non_negative() -> None:
    with pytest.raises(ValueError, match="impressions_len=-1"):
        HistoryConfig(impressions_len=-1)


@pytest.mark.parametrize("split", ["train", "test"])
def test_datamodule_impression_batches(handmade_dataset: Path, split: str) -> None:
    import pyarrow.parquet as pq

    dm = LemurDataModule(
        root=str(handmade_dataset), batch_size=16, num_workers=0, history=HistoryConfig(impressions_len=6)
    )
    dm.setup("fit")
    docs = pq.read_table(handmade_dataset / "docs.parquet")
    ev = pq.read_table(handmade_dataset / "events.parquet").to_pydict()
    dense_of = {d: i for i, d in enumerate(docs["doc_id"].to_pylist())}
    user, ts, label = np.array(ev["user_id"]), np.array(ev["timestamp"]), np.array(ev["label"])
    doc = np.array([dense_of[d] for d in ev["doc_id"]])
    rows = dm.splits[split]
    batch = dm.store.batch(rows)
    items, labels, mask = (batch[k].numpy() for k in ("hist_imp", "hist_imp_label", "hist_imp_mask"))
    assert items.shape == labels.shape == mask.shape and items.shape[1] <= 6
    seen = 0
    for k, r in enumerate(rows):
        expected = brute_force_impressions(user, ts, doc, label, r)[:6]
        assert list(zip(items[k][mask[k]].tolist(), labels[k][mask[k]].tolist())) == expected, f"row {r}"
        seen += len(expected)
    assert seen > 0
    plain = LemurDataModule(root=str(handmade_dataset), batch_size=16, num_workers=0)
    plain.setup("fit")
    assert "hist_imp" not in plain.store.batch(rows[:4])  # not built unless asked for
