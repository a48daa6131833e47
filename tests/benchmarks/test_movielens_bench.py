"""benchmarks/movielens.py: its AUC, the cold-start/new-user split and the report, on a fake finished suite."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import make_tables, write_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("movielens_bench", REPO / "benchmarks" / "movielens.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["movielens_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_auc_matches_sklearn(bench) -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    label = rng.random(500) < 0.4
    score = np.round(rng.random(500) + 0.3 * label, 1)  # many ties
    assert bench.auc(label, score) == pytest.approx(roc_auc_score(label, score), abs=1e-12)
    assert np.isnan(bench.auc(np.ones(3), np.arange(3.0)))


def test_report_from_finished_runs(bench, tmp_path: Path, monkeypatch) -> None:
    # the real machine() imports torch and lightning for their versions (seconds); the report only needs a dict
    monkeypatch.setattr(
        bench, "machine", lambda device: {"date": "2026-01-01", "cpu_count": 2, "torch": "t", "lightning": "l"}
    )
    data = write_dataset(tmp_path / "data", *make_tables(n_docs=300, n_days=4))  # most test docs unseen in days 0-1
    (data / "movielens.json").write_text(
        json.dumps({"suggested_split": {"train_rows": 1, "val_rows": 1, "test_rows": 1}})
    )
    monkeypatch.setattr(bench, "DATA", data)
    events = pq.read_table(data / "events.parquet").to_pylist()
    facts = bench.split_facts({"data": {"init_args": {"val_days": 1, "test_days": 1}}})
    test = [r for r in events if r["day"] == 3]
    train_docs = {r["doc_id"] for r in events if r["day"] <= 1}
    cold = np.asarray([r["doc_id"] not in train_docs for r in test])
    assert cold.sum() == (~np.isin([r["doc_id"] for r in test], facts["train_docs"])).sum() > 0
    label = np.asarray([r["label"] for r in test])
    suite = yaml.safe_load((REPO / "recipes" / "suites" / "movielens_100k.yaml").read_text())
    out = tmp_path / "suite"
    for variant, stages, quality in (
        ("id_only", ["fit"], 0.0),
        ("two_stage", ["pretrain", "rank"], 0.5),
        ("end_to_end", ["fit"], 1.0),
    ):
        for stage in stages:
            folder = out / variant / "seed0" / stage
            folder.mkdir(parents=True)
            record = {
                "status": "tested",
                "run_id": "r",
                "params": {"total": 10, "trainable": 5},
                "metrics": {"test/auc": 0.7, "test/qauc": 0.6, "test/gauc": 0.65},
                "phases": {"train": {"rows": 100, "seconds": 10.0, "rows_per_s": 10.0}},
            }
            (folder / "metrics.json").write_text(json.dumps(record))
        # scores: perfect on cold items for end_to_end, uninformative for id_only
        score = np.where(cold, quality * label + (1 - quality) * 0.5, np.linspace(0, 1, len(label)))
        pq.write_table(
            pa.table(
                {
                    "score": score.astype(np.float32),
                    "label": label,
                    "doc_id": [r["doc_id"] for r in test],
                    "user_id": [r["user_id"] for r in test],
                    "session_id": [r["session_id"] for r in test],
                }
            ),
            out / variant / "seed0" / stages[-1] / "predictions.parquet",
        )
    rows = bench.collect(out, suite, facts, env={})
    by = {r["variant"]: r for r in rows}
    assert set(by) == {"id_only", "two_stage", "end_to_end"}
    assert by["end_to_end"]["cold_item_auc"] == pytest.approx(1.0) and by["id_only"]["cold_item_auc"] == pytest.approx(
        0.5
    )
    assert by["two_stage"]["train_wall_s_all_stages"] == 20.0  # both stages count
    assert by["id_only"]["cold_item_rows"] == int(cold.sum()) and by["id_only"]["test_rows"] == len(test)
    summary = bench.aggregate(rows)
    bench.write_report(rows, summary, facts, 1, tmp_path / "report")
    text = (tmp_path / "report.md").read_text()
    assert "| end_to_end | 1 | 0.7000 |" in text and "cold-item AUC" in text
    assert (tmp_path / "report.png").stat().st_size > 1000 and (tmp_path / "report.csv").exists()
    assert json.loads((tmp_path / "report.json").read_text())["summary"][0]["variant"] == "id_only"
