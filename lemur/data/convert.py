"""Building blocks for converting raw logs into lemur's schema (:mod:`lemur.data.schema`).

Used by ``lemur data movielens-100k`` and the adapters in :mod:`lemur.data.adapters`, and
usable for your own logs (see ``docs/datasets.md``). Everything is vectorised numpy:

- :func:`window_sessions`: group a user's rows into sessions by clock windows (rows of one
  session share the window's first timestamp, as the schema requires);
- :func:`last_positive_before`: for each session, the user's latest positive row strictly
  before it (the "trigger" that fills the query slot of datasets without queries);
- :func:`day_index`: day numbers for the time-ordered split;
- :func:`suggest_split`: how many final days to hold out for ~10% validation / ~10% test rows;
- :func:`sample_negatives`: unclicked rows for datasets that only log positives;
- :func:`codes`: categorical values -> dense ints >= 1 (0 = unknown);
- :func:`write_dataset`: write both tables, validate them and a JSON summary.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lemur.data.schema import DOCS_FILE, EVENTS_FILE, validate_dataset

SECONDS_PER_DAY = 86_400


def window_sessions(
    user: np.ndarray, seconds: np.ndarray, window: int, tz_offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sessions = a user's rows in one clock window ``[k*window, (k+1)*window)`` (local time).

    ``window`` must divide a day, so a session never spans two days. Returns
    ``(session_id, session_seconds)`` per row: ids 0..S-1 numbered by (start time, user), and
    the session's earliest time (every row of a session gets it).
    """
    if window < 1 or SECONDS_PER_DAY % window:
        raise ValueError(f"session window must be a positive divisor of {SECONDS_PER_DAY} seconds, got {window}")
    user, seconds = np.asarray(user), np.asarray(seconds, dtype=np.int64)
    bucket = (seconds + tz_offset) // window
    _, user_rank = np.unique(user, return_inverse=True)
    key = bucket * (int(user_rank.max()) + 1 if len(user_rank) else 1) + user_rank
    uniq, inverse = np.unique(key, return_inverse=True)
    start = np.full(len(uniq), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(start, inverse, seconds)
    order = np.lexsort((uniq, start))  # by start time, then (bucket, user)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64), start[inverse]


def last_positive_before(
    user: np.ndarray, time: np.ndarray, positive: np.ndarray, query_user: np.ndarray, query_time: np.ndarray
) -> np.ndarray:
    """Index (into the first arrays) of each query's latest positive row of the same user with
    ``time < query_time``; -1 where there is none. Ties in time go to the last row in input order."""
    user, time, positive = np.asarray(user), np.asarray(time, dtype=np.int64), np.asarray(positive, bool)
    query_user, query_time = np.asarray(query_user), np.asarray(query_time, dtype=np.int64)
    users = np.unique(np.concatenate([user, query_user]))
    pos = np.flatnonzero(positive)
    pos_user = np.searchsorted(users, user[pos])
    order = np.lexsort((pos, time[pos], pos_user))
    pos, pos_user = pos[order], pos_user[order]
    pos_time = time[pos]
    q_user = np.searchsorted(users, query_user)
    # rows sorted by (user, time): the first row at or after (q_user, q_time), minus one
    span = int(max(pos_time.max() if len(pos) else 0, query_time.max() if len(query_time) else 0)) + 1
    key = pos_user.astype(np.int64) * span + pos_time
    qkey = q_user.astype(np.int64) * span + query_time
    at = np.searchsorted(key, qkey, side="left") - 1
    ok = (at >= 0) & (pos_user[np.maximum(at, 0)] == q_user) if len(pos) else np.zeros(len(qkey), bool)
    return np.where(ok, pos[np.maximum(at, 0)] if len(pos) else -1, -1).astype(np.int64)


def day_index(seconds: np.ndarray, tz_offset: int = 0) -> np.ndarray:
    """Local calendar day of each time, counted from the first day in the data (int32, >= 0)."""
    day = (np.asarray(seconds, dtype=np.int64) + tz_offset) // SECONDS_PER_DAY
    return (day - day.min()).astype(np.int32)


def suggest_split(day: np.ndarray, val_fraction: float = 0.1, test_fraction: float = 0.1) -> dict:
    """The smallest numbers of final (distinct) days holding >= ``test_fraction`` of the rows for
    test and then >= ``val_fraction`` for validation, as ``LemurDataModule`` counts days."""
    days, counts = np.unique(day, return_counts=True)
    n = counts.sum()
    tail = np.cumsum(counts[::-1])
    test_days = int(np.searchsorted(tail, test_fraction * n) + 1)
    test_rows = int(tail[test_days - 1])
    val_days = int(np.searchsorted(tail, test_rows + val_fraction * n) + 1) - test_days
    if test_days + val_days >= len(days):
        val_days, test_days = (1, 1) if len(days) >= 3 else (0, 1)
    val_rows = int(tail[test_days + val_days - 1]) - int(tail[test_days - 1])
    test_rows = int(tail[test_days - 1])
    return {
        "val_days": val_days,
        "test_days": test_days,
        "train_rows": int(n - val_rows - test_rows),
        "val_rows": val_rows,
        "test_rows": test_rows,
        "distinct_days": int(len(days)),
        "train_last_day": int(days[len(days) - val_days - test_days - 1]),
    }


def sample_negatives(
    user: np.ndarray, item: np.ndarray, time: np.ndarray, per_positive: int, window: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unclicked items for logs of positives only: for each row, ``per_positive`` items that other
    rows hit within ``window`` time units of it (so popular-at-the-time items are drawn more
    often, like an exposure log) and that the user never interacted with.

    Returns ``(row, item)``: the positive row each negative belongs to and the drawn item.
    Rows whose window has too few candidates get fewer negatives (after 8 tries).
    """
    rng = np.random.default_rng(seed)
    user, item, time = np.asarray(user), np.asarray(item), np.asarray(time, dtype=np.int64)
    order = np.argsort(time, kind="stable")
    sorted_time, sorted_item = time[order], item[order]
    lo = np.searchsorted(sorted_time, time - window, side="left")
    hi = np.searchsorted(sorted_time, time + window, side="right")
    users, user_rank = np.unique(user, return_inverse=True)
    items, item_rank = np.unique(item, return_inverse=True)
    seen = np.unique(user_rank.astype(np.int64) * len(items) + item_rank)
    rows = np.repeat(np.arange(len(user)), per_positive)
    drawn = np.full(len(rows), -1, dtype=np.int64)
    todo = np.arange(len(rows))
    for _ in range(8):
        if not len(todo):
            break
        r = rows[todo]
        pick = sorted_item[lo[r] + (rng.random(len(r)) * (hi[r] - lo[r])).astype(np.int64)]
        key = user_rank[r].astype(np.int64) * len(items) + np.searchsorted(items, pick)
        found = np.searchsorted(seen, key)
        clash = (found < len(seen)) & (seen[np.minimum(found, len(seen) - 1)] == key)
        drawn[todo[~clash]] = pick[~clash]
        todo = todo[clash]
    keep = drawn >= 0
    rows, drawn = rows[keep], drawn[keep]
    # one negative per (row, item): drop repeats drawn for the same row
    _, first = np.unique(rows.astype(np.int64) * (int(drawn.max()) + 1 if len(drawn) else 1) + drawn, return_index=True)
    first.sort()
    return rows[first], drawn[first]


def codes(values, known: list | None = None) -> tuple[np.ndarray, list]:
    """Categorical values -> int64 codes 1..K (0 = missing/unknown); returns ``(codes, vocabulary)``.
    ``known`` fixes the vocabulary and its order; else the sorted distinct non-missing values."""
    arr = np.asarray(["" if v is None else str(v) for v in values], dtype=object)
    vocab = list(known) if known is not None else sorted(set(arr.tolist()) - {""})
    lookup = {v: i + 1 for i, v in enumerate(vocab)}
    return np.fromiter((lookup.get(v, 0) for v in arr), dtype=np.int64, count=len(arr)), vocab


def prepare_output(out: str | Path, force: bool) -> Path:
    """The output folder, checked: an existing dataset there needs ``force`` (then it is replaced)."""
    out = Path(out)
    if (out / EVENTS_FILE).exists() or (out / DOCS_FILE).exists():
        if not force:
            raise FileExistsError(f"{out} already holds a dataset; pass --force to replace it")
        for name in (DOCS_FILE, EVENTS_FILE):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / ".cache", ignore_errors=True)  # tokenisation cache of the old data
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_dataset(out: Path, docs: pa.Table, events: pa.Table, summary: dict, name: str, log=print) -> dict:
    """Write ``docs.parquet`` + ``events.parquet``, validate them, write ``<name>.json`` (the
    summary plus counts and the suggested split) and return that summary."""
    out = Path(out)
    log(f"writing {out / DOCS_FILE} ({docs.num_rows:,} documents) and {out / EVENTS_FILE} ({events.num_rows:,} rows)")
    pq.write_table(docs, out / DOCS_FILE)
    pq.write_table(events, out / EVENTS_FILE)
    validate_dataset(out)
    label = events["label"].to_numpy()
    sessions = events["session_id"].to_numpy()
    _, inverse = np.unique(sessions, return_inverse=True)
    pos = np.bincount(inverse, weights=label)
    size = np.bincount(inverse)
    summary = {
        **summary,
        "documents": docs.num_rows,
        "rows": events.num_rows,
        "users": int(len(np.unique(events["user_id"].to_numpy()))),
        "sessions": int(len(size)),
        "sessions_with_both_labels": int(((pos > 0) & (pos < size)).sum()),
        "positive_rate": round(float(label.mean()), 4),
        "days": int(events["day"].to_numpy().max()) + 1,
        "suggested_split": suggest_split(events["day"].to_numpy()),
    }
    (out / f"{name}.json").write_text(json.dumps(summary, indent=1, default=str))
    split = summary["suggested_split"]
    log(
        f"{out}: OK ({summary['documents']:,} documents, {summary['rows']:,} rows, {summary['users']:,} users, "
        f"{summary['sessions']:,} sessions, positive rate {summary['positive_rate']:.3f})"
    )
    log(
        f"  split for ~10%/10% val/test rows: --data.init_args.val_days {split['val_days']} "
        f"--data.init_args.test_days {split['test_days']} (train {split['train_rows']:,} / val {split['val_rows']:,} / "
        f"test {split['test_rows']:,} rows); details in {out / (name + '.json')}"
    )
    return summary
