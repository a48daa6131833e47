"""diagnostics/movielens_cold_ceiling.py: content that decides the label fills a cold movie's missing ID
coefficient; warm rows keep the ID model's scores; the script writes its files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from conftest import write_dataset

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "diagnostics"))
sys.path.insert(1, str(REPO / "benchmarks"))  # common.py, movielens.py


def genre_decides(root: Path, n_docs: int = 60, n_users: int = 40, n_days: int = 6) -> Path:
    """Movies whose genre is "Good" are liked 85% of the time, "Bad" ones 15%; each user rates 8 random movies
    a day."""
    rng = np.random.default_rng(0)
    good = np.arange(n_docs) % 2 == 0
    docs = pa.table(
        {
            "doc_id": pa.array(np.arange(n_docs) + 100, pa.int64()),
            "title": [f"Movie {i} ({1950 + i % 40})" for i in range(n_docs)],
            "cover_text": ["Good" if g else "Bad" for g in good],
            "publish_day": pa.array(np.zeros(n_docs, np.int32)),
        }
    )
    rows = []
    for day in range(n_days):
        for user in range(n_users):
            for doc in rng.choice(n_docs, 8, replace=False):
                rows.append(
                    (day, user, day * 1000 + user, doc + 100, int(rng.random() < (0.85 if good[doc] else 0.15)))
                )
    day, user, session, doc, label = map(np.asarray, zip(*rows))
    events = pa.table(
        {
            "timestamp": pa.array(day * 86_400 + np.arange(len(day)) % 86_000, pa.int64()),
            "day": pa.array(day, pa.int32()),
            "user_id": pa.array(user, pa.int64()),
            "session_id": pa.array(session, pa.int64()),
            "query": pa.array([""] * len(day)),
            "doc_id": pa.array(doc, pa.int64()),
            "label": pa.array(label, pa.int8()),
        }
    )
    return write_dataset(root, docs, events)


def test_content_fills_cold_coefficients_only(tmp_path: Path) -> None:
    from movielens import load_split
    from movielens_cold_ceiling import evaluate, read_docs, year_genre_vectors

    data = genre_decides(tmp_path / "data")
    docs = read_docs(data)
    vectors = year_genre_vectors(docs)
    assert vectors.shape == (60, 4 + 2)  # decades 1950-1980, genres Bad / Good
    split = load_split(data, val_days=1, test_days=1, cold_docs=0.3, cold_docs_seed=0)
    [row] = evaluate(split, {"year_genres": vectors}, docs["doc_id"], n_resamples=200)
    assert row["cold_movies"] == 18 and row["cold_rows"] > 50
    assert row["auc_cold_item_ids"] < 0.65  # user coefficients only: nearly blind to the movie
    assert row["auc_cold_item_content"] > 0.8  # the genre decides the label and the ridge learns it
    assert row["auc_cold_item_delta_ci_low"] > 0.1


def test_script_writes_its_files(tmp_path: Path) -> None:
    from movielens_cold_ceiling import main

    data = genre_decides(tmp_path / "data")
    out = tmp_path / "results"
    args = ["--data", str(data), "--val-days", "1", "--test-days", "1", "--draws", "2", "--resamples", "100"]
    assert main([*args, "--contents", "year_genres", "minilm", "--out", str(out), "--tag", "t", "--threads", "1"]) == 0
    [result] = out.glob("movielens-cold-ceiling-t-*.json")
    payload = json.loads(result.read_text())
    assert [(r["split"], r["draw"], r["content"]) for r in payload["rows"]] == [
        ("temporal", None, "year_genres"),
        ("temporal", None, "minilm"),
        ("holdout", 0, "year_genres"),
        ("holdout", 0, "minilm"),
        ("holdout", 1, "year_genres"),
        ("holdout", 1, "minilm"),
    ]
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
