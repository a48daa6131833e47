"""Shared fixtures: a small hand-made dataset in lemur's schema (independent of the generator)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

WORDS = "apple river music guitar forest ocean piano mountain coffee garden rocket planet".split()


def _png(color: tuple[int, int, int], size: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def make_tables(
    n_docs: int = 40, n_users: int = 6, n_days: int = 4, sessions_per_day: int = 3, seed: int = 0
) -> tuple[pa.Table, pa.Table]:
    """A tiny valid (docs, events) pair: each user has a few 4-row sessions per day."""
    rng = np.random.default_rng(seed)
    doc_ids = rng.permutation(10_000)[:n_docs].astype(np.int64) + 1_000
    docs = pa.table(
        {
            "doc_id": doc_ids,
            "title": [" ".join(rng.choice(WORDS, 4)) for _ in range(n_docs)],
            "ocr": [" ".join(rng.choice(WORDS, 6)) for _ in range(n_docs)],
            "asr": [None if i % 3 == 0 else "music" for i in range(n_docs)],
            "cover_text": ["coffee" for _ in range(n_docs)],
            "image": [None if i % 7 == 0 else _png((i * 5 % 256, 100, 50)) for i in range(n_docs)],
            "publish_day": pa.array(np.minimum(np.arange(n_docs) // 12, n_days - 1), pa.int32()),
        }
    )
    rows = []
    session = 0
    for day in range(n_days):
        for user in range(n_users):
            for s in range(sessions_per_day):
                ts = day * 86_400 + user * 1_000 + s * 100
                shown = rng.choice(n_docs, 4, replace=False)
                for pos, d in enumerate(shown):
                    rows.append(
                        (
                            ts,
                            day,
                            500 + user,
                            session,
                            " ".join(rng.choice(WORDS, 2)),
                            doc_ids[d],
                            int(rng.random() < 0.4),
                            ts // 3600 % 24,
                            float(pos),
                        )
                    )
                session += 1
    cols = list(zip(*rows))
    events = pa.table(
        {
            "timestamp": pa.array(cols[0], pa.int64()),
            "day": pa.array(cols[1], pa.int32()),
            "user_id": pa.array(cols[2], pa.int64()),
            "session_id": pa.array(cols[3], pa.int64()),
            "query": pa.array(cols[4], pa.string()),
            "doc_id": pa.array(cols[5], pa.int64()),
            "label": pa.array(cols[6], pa.int8()),
            "cat_hour": pa.array(cols[7], pa.int64()),
            "dense_position": pa.array(cols[8], pa.float32()),
        }
    )
    return docs, events


def write_dataset(root: Path, docs: pa.Table, events: pa.Table) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(docs, root / "docs.parquet")
    pq.write_table(events, root / "events.parquet")
    return root


@pytest.fixture
def handmade_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "handmade", *make_tables())
