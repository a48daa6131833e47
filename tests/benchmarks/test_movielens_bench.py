"""benchmarks/movielens.py: the baselines, the metrics, the paired intervals and the report, on hand-made tables
and a fake finished suite (no MovieLens download, no training)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import make_tables, write_dataset

REPO = Path(__file__).resolve().parents[2]
X, Y, Z, W = 10, 20, 30, 40  # movies; Z never appears in the training days
P = 7 / 13  # training CTR of the hand-made table


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("movielens_bench", REPO / "benchmarks" / "movielens.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["movielens_bench"] = module
    spec.loader.exec_module(module)
    return module


def _fake_machine(device: str) -> dict:
    # the real machine() imports torch and lightning for their versions (seconds); the report only needs a dict
    return {"date": "2026-01-01", "cpu_count": 2, "torch": "t", "lightning": "l"}


def hand_events() -> pa.Table:
    """Days 0-1 train, 2 validation, 3 test. Training (user, movie): labels (1, X) 1 0, (1, Y) 1 1 1 0,
    (2, X) 1 0 0 0, (2, Y) 1 0, (1, W) 1: CTR 7/13; X 2/6, Y 4/6, W 1/1. User 3 and movie Z are new in the test."""
    rows = []  # (day, user, session, doc, label)
    train = {(1, X): [1, 0], (1, Y): [1, 1, 1, 0], (2, X): [1, 0, 0, 0], (2, Y): [1, 0], (1, W): [1]}
    for (user, doc), labels in train.items():
        for i, label in enumerate(labels):
            rows.append((i % 2, user, 10 * user + i % 2, doc, label))
    rows += [(2, 1, 21, W, 0), (2, 2, 22, Y, 1)]  # validation: only a >= 10 ranks Y (4/6) above W (1/1)
    rows += [  # test
        (3, 1, 100, X, 0),
        (3, 1, 100, Y, 1),
        (3, 1, 101, Z, 1),
        (3, 1, 101, W, 0),
        (3, 2, 200, X, 1),
        (3, 2, 200, Y, 0),
        (3, 3, 300, X, 0),
        (3, 3, 300, Y, 1),
        (3, 3, 300, Z, 0),
    ]
    day, user, session, doc, label = map(list, zip(*rows))
    return pa.table(
        {
            "timestamp": pa.array([d * 86_400 + i for i, d in enumerate(day)], pa.int64()),
            "day": pa.array(day, pa.int32()),
            "user_id": pa.array(user, pa.int64()),
            "session_id": pa.array(session, pa.int64()),
            "query": pa.array([""] * len(day)),
            "doc_id": pa.array(doc, pa.int64()),
            "label": pa.array(label, pa.int8()),
        }
    )


@pytest.fixture()
def hand_split(bench, tmp_path: Path) -> dict:
    docs = pa.table({"doc_id": pa.array([X, Y, Z, W], pa.int64()), "publish_day": pa.array([0, 0, 3, 0], pa.int32())})
    root = write_dataset(tmp_path / "hand", docs, hand_events())
    return bench.load_split(root, val_days=1, test_days=1)


def test_auc_matches_sklearn(bench) -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    label = rng.random(500) < 0.4
    score = np.round(rng.random(500) + 0.3 * label, 1)  # many ties
    assert bench.auc(label, score) == pytest.approx(roc_auc_score(label, score), abs=1e-12)
    assert np.isnan(bench.auc(np.ones(3), np.arange(3.0)))


def test_split_and_cold_rows(hand_split) -> None:
    s = hand_split
    assert s["days"] == {"train": [0, 1], "val": [2], "test": [3]}
    assert len(s["train"]["label"]) == 13 and len(s["val"]["label"]) == 2 and len(s["test"]["label"]) == 9
    test = s["test"]
    # read_predictions' order: by session, then movie
    assert test["session_id"].tolist() == [100, 100, 101, 101, 200, 200, 300, 300, 300]
    assert test["doc_id"].tolist() == [X, Y, Z, W, X, Y, X, Y, Z]
    assert s["cold_item"].tolist() == [d == Z for d in test["doc_id"]]
    assert s["cold_user"].tolist() == [u == 3 for u in test["user_id"]]
    assert test["is_new_doc"].tolist() == s["cold_item"].tolist()  # Z's publish_day is the test day


def test_popularity_by_hand(bench, hand_split) -> None:
    train, test = hand_split["train"], hand_split["test"]
    score = bench.popularity_scores(train, np.array([X, Y, Z, W]), 2.0)
    assert score == pytest.approx([(2 + 2 * P) / 8, (4 + 2 * P) / 8, P, (1 + 2 * P) / 3])
    with pytest.raises(ValueError):
        bench.popularity_scores(train, np.array([X]), 0.0)
    fitted = bench.baselines(hand_split)["popularity"]
    # W (1 click in 1 showing) stays above Y (4 in 6) until a > 6.5: the grid's first a above is 10
    assert fitted["param"] == {"a": 10.0}
    assert fitted["val_auc"][5.0] == 0.0 and fitted["val_auc"][10.0] == 1.0
    expected = {X: (2 + 10 * P) / 16, Y: (4 + 10 * P) / 16, Z: P, W: (1 + 10 * P) / 11}
    assert fitted["run"]["score"] == pytest.approx([expected[d] for d in test["doc_id"]])
    assert fitted["run"]["session_id"].tolist() == test["session_id"].tolist()


def test_logreg_ids_by_hand(bench, hand_split) -> None:
    # user + movie logits fit the 2 x 2 table exactly (odds 1, 3, 1/3, 1), so the near-unpenalised fit
    # returns the cells' CTRs: (1, X) 1/2, (1, Y) 3/4, (2, X) 1/4, (2, Y) 1/2
    cells = {(1, X): [1, 0], (1, Y): [1, 1, 1, 0], (2, X): [1, 0, 0, 0], (2, Y): [1, 0]}
    pairs = [(u, d, label) for (u, d), labels in cells.items() for label in labels]
    train = {k: np.array(v) for k, v in zip(("user_id", "doc_id", "label"), zip(*pairs))}
    scorer = bench.logreg_ids(train, C=1e6)
    logit = scorer({"user_id": np.array([1, 1, 2, 2, 3, 3]), "doc_id": np.array([X, Y, X, Y, Y, Z])})
    prob = 1 / (1 + np.exp(-logit))
    assert prob[:4] == pytest.approx([0.5, 0.75, 0.25, 0.5], abs=1e-3)
    assert prob[3] < prob[4] < prob[1]  # a new user gets the movie's effect only
    # tuned on the validation day, scored on the test rows with the chosen C
    fitted = bench.baselines(hand_split)["logreg_ids"]
    C = fitted["param"]["C"]
    assert C in bench.LOGREG_CS and fitted["val_auc"][C] == max(fitted["val_auc"].values())
    again = bench.logreg_ids(hand_split["train"], C)(hand_split["test"])
    assert fitted["run"]["score"] == pytest.approx(again)


def test_metrics_by_hand(bench, hand_split) -> None:
    test = hand_split["test"]
    # rows in test order: (s100 X 0, Y 1), (s101 Z 1, W 0), (s200 X 1, Y 0), (s300 X 0, Y 1, Z 0)
    assert test["label"].tolist() == [0, 1, 1, 0, 1, 0, 0, 1, 0]
    score = np.array([0.1, 0.9, 0.8, 0.2, 0.3, 0.7, 0.5, 0.5, 0.1])
    m = bench.point_metrics({**test, "score": score}, hand_split["cold_item"], hand_split["cold_user"])
    # per user: 1 -> 1.0 (4 rows), 2 -> 0.0 (2 rows), 3 -> 0.75 (3 rows; Y ties X: half credit)
    assert m["gauc_user"] == pytest.approx((1 + 0 + 0.75) / 3)
    assert m["gauc"] == pytest.approx((4 * 1 + 2 * 0 + 3 * 0.75) / 9)
    assert m["qauc"] == pytest.approx((1 + 1 + 0 + 0.75) / 4)  # sessions 100, 101, 200, 300
    assert m["auc"] == pytest.approx(16.5 / 20)
    assert m["auc_cold_item"] == 1.0  # Z: (user 1, clicked, 0.8) above (user 3, not, 0.1)
    # warm items: positives 0.9, 0.3, 0.5 against negatives 0.1, 0.2, 0.7, 0.5: 4 + 2 + 2.5 of 12 pairs
    assert m["auc_warm_item"] == pytest.approx(8.5 / 12)
    assert m["auc_cold_user"] == 0.75 and m["auc_warm_user"] == pytest.approx(8 / 9)


@pytest.fixture()
def synth_split(bench, tmp_path: Path) -> dict:
    """make_tables' 4 days (72 test rows, most movies new in the test day) without user 505's training rows,
    so the test day has a cold-start user too. (Rows, not the hand table: a row resample of 9 rows often
    holds one class, and paired_delta's interval is then NaN.)"""
    docs, events = make_tables(n_docs=300, n_days=4)
    keep = pa.compute.invert(
        pa.compute.and_(pa.compute.equal(events["user_id"], 505), pa.compute.less(events["day"], 2))
    )
    return bench.load_split(write_dataset(tmp_path / "synth", docs, events.filter(keep)), val_days=1, test_days=1)


def test_deltas_pair_baselines_with_every_reference_seed(bench, synth_split) -> None:
    split = synth_split
    test, cold_item, cold_user = split["test"], split["cold_item"], split["cold_user"]
    assert 0 < cold_item.sum() < len(cold_item) and 0 < cold_user.sum() < len(cold_user)
    fitted = bench.baselines(split)
    rng = np.random.default_rng(0)
    n = len(test["label"])
    runs = {"id_only": {s: {**test, "score": rng.random(n) + 0.4 * test["label"]} for s in (0, 1, 2)}}
    rows = [
        {
            "variant": "id_only",
            "seed": s,
            "train_wall_s_all_stages": 1.0,
            **bench.point_metrics(r, cold_item, cold_user),
        }
        for s, r in runs["id_only"].items()
    ]
    summary = bench.summarize(rows, runs, fitted, split, n_resamples=200)
    by = {s["variant"]: s for s in summary}
    assert [s["variant"] for s in summary] == ["popularity", "logreg_ids", "id_only"]
    assert by["popularity"]["seeds"] == 0 and by["popularity"]["delta_seeds"] == [0, 1, 2]
    assert by["id_only"]["seeds"] == 3 and by["id_only"]["auc_std"] > 0
    for name in ("popularity", "logreg_ids"):
        row = by[name]
        for m in bench.DELTA_METRICS:
            value, low, high = row[f"{m}_delta"], row[f"{m}_delta_ci_low"], row[f"{m}_delta_ci_high"]
            # the point delta: the baseline's metric minus id_only's seed mean, inside its interval
            assert value == pytest.approx(row[m] - by["id_only"][m], abs=1e-9), (name, m)
            assert low < value < high, (name, m)
    assert all(math.isnan(by["id_only"][f"{m}_delta"]) for m in bench.DELTA_METRICS)  # the reference row
    # without the reference: no deltas, the rest still reported
    alone = bench.summarize([], {}, fitted, split, n_resamples=50)
    assert [s["variant"] for s in alone] == ["popularity", "logreg_ids"]
    assert all(math.isnan(s["auc_delta"]) for s in alone)


def test_report_from_finished_runs(bench, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench, "machine", _fake_machine)
    data = write_dataset(tmp_path / "data", *make_tables(n_docs=300, n_days=4))  # most test docs unseen in days 0-1
    (data / "movielens.json").write_text(
        json.dumps({"suggested_split": {"train_rows": 1, "val_rows": 1, "test_rows": 1}})
    )
    monkeypatch.setattr(bench, "DATA", data)
    base = tmp_path / "base.yaml"
    base.write_text("data:\n  init_args: {val_days: 2, test_days: 1}\n")
    over = tmp_path / "over.yaml"  # a later base recipe overrides an earlier one, as `lemur fit -c a -c b`
    over.write_text("data:\n  init_args: {val_days: 1}\n")
    split = bench.split_of({"base": [str(base), str(over)]})
    events = pq.read_table(data / "events.parquet").to_pylist()
    test = sorted((r for r in events if r["day"] == 3), key=lambda r: (r["session_id"], r["doc_id"]))
    train_docs = {r["doc_id"] for r in events if r["day"] <= 1}
    cold = np.asarray([r["doc_id"] not in train_docs for r in test])
    assert split["cold_item"].tolist() == cold.tolist() and 0 < cold.sum() < len(test)
    assert not split["cold_user"].any()  # every user rates every day: no cold-start user, that AUC is n/a
    label = np.asarray([r["label"] for r in test])
    suite = yaml.safe_load((REPO / "recipes" / "suites" / "movielens_100k.yaml").read_text())
    out = tmp_path / "suite"
    rng = np.random.default_rng(1)
    # id_only: 2 seeds with the suite's test_predictions.parquet; end_to_end_minilm: an older run with only
    # lemur predict's predictions.parquet (no is_new_doc), rows shuffled; two_stage_minilm: seed 0 finished
    # (uninformative on cold items), seed 1 a smoke run
    for variant, seeds, stages, quality, file in (
        ("id_only", (0, 1), ["fit"], 0.0, "test_predictions.parquet"),
        ("end_to_end_minilm", (0,), ["fit"], 1.0, "predictions.parquet"),
        ("two_stage_minilm", (0,), ["fit"], 0.0, "test_predictions.parquet"),
    ):
        for seed in seeds:
            for stage in stages:
                folder = out / variant / f"seed{seed}" / stage
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
            score = np.where(cold, quality * label + (1 - quality) * 0.5, rng.random(len(label)) + 0.2 * label)
            columns = {
                "score": score.astype(np.float32),
                "label": label.astype(np.float32),
                "doc_id": [r["doc_id"] for r in test],
                "user_id": [r["user_id"] for r in test],
                "session_id": [r["session_id"] for r in test],
            }
            if file == "test_predictions.parquet":
                columns["is_new_doc"] = cold
            order = rng.permutation(len(label))
            pq.write_table(pa.table(columns).take(order), out / variant / f"seed{seed}" / stages[-1] / file)
    smoke = out / "two_stage_minilm" / "seed1" / "fit"  # a smoke run that tested 2 batches: left out
    smoke.mkdir(parents=True)
    (smoke / "metrics.json").write_text(json.dumps({"status": "tested"}))
    pq.write_table(pa.table({**columns, "is_new_doc": cold}).slice(0, 5), smoke / "test_predictions.parquet")

    rows, runs = bench.collect(out, suite, split, env={})
    assert {(r["variant"], r["seed"]) for r in rows} == {
        ("id_only", 0),
        ("id_only", 1),
        ("end_to_end_minilm", 0),
        ("two_stage_minilm", 0),
    }
    by = {r["variant"]: r for r in rows}
    assert by["end_to_end_minilm"]["auc_cold_item"] == pytest.approx(1.0) and by["id_only"]["auc_cold_item"] == 0.5
    assert by["id_only"]["logged_test_auc"] == 0.7 and math.isnan(by["id_only"]["auc_cold_user"])
    fitted = bench.baselines(split)
    summary = bench.summarize(rows, runs, fitted, split, n_resamples=100)
    names = ["popularity", "logreg_ids", "id_only", "two_stage_minilm", "end_to_end_minilm"]
    assert [s["variant"] for s in summary] == names
    e2e = {s["variant"]: s for s in summary}["end_to_end_minilm"]
    assert e2e["delta_seeds"] == [0] and e2e["auc_cold_item_delta"] == pytest.approx(0.5)
    assert e2e["auc_cold_item_delta_ci_low"] <= 0.5 <= e2e["auc_cold_item_delta_ci_high"]
    # end-to-end minus two-stage, paired by seed (0 only: two_stage_minilm seed 1 was left out)
    pairs = bench.contrasts(runs, split, n_resamples=100)
    assert [(c["variant"], c["reference"], c["delta_seeds"]) for c in pairs] == [
        ("end_to_end_minilm", "two_stage_minilm", [0])
    ]
    assert pairs[0]["auc_cold_item_delta"] == pytest.approx(0.5)
    bench.write_report(rows, summary, fitted, split, 1, tmp_path / "report", {}, pairs=pairs)
    text = (tmp_path / "report.md").read_text()
    for name in names:
        assert f"| {name} |" in text
    assert "| end_to_end_minilm | two_stage_minilm | 0 |" in text
    assert "cold-item AUC" in text and "Does `id_only` beat the baselines?" in text
    assert (tmp_path / "report.png").stat().st_size > 1000
    with open(tmp_path / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == names
    for col in ("auc", "gauc_user", "gauc", "qauc", "auc_cold_item"):
        assert {f"{col}_delta", f"{col}_delta_ci_low", f"{col}_delta_ci_high"} <= set(table[0])
    payload = json.loads((tmp_path / "report.json").read_text())
    assert payload["contrasts"][0]["reference"] == "two_stage_minilm"
    assert payload["summary"][0]["variant"] == "popularity" and payload["baselines"]["popularity"]["param"]["a"] > 0


def test_another_suite_needs_an_id_only_variant(bench, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench, "SUITE", bench.SUITE)  # main() rebinds it; restored after the test
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nseeds: [0]\nbase: [recipes/movielens/lemur.yaml]\nvariants:\n  - name: other\n")
    with pytest.raises(SystemExit):
        bench.main(["--suite", str(suite), "--skip-run", "--results", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench.main(["--suite", str(tmp_path / "missing.yaml"), "--skip-run"])


def test_variants_of_another_suite_follow_the_known_ones(bench, synth_split) -> None:
    split = synth_split
    run = {**split["test"], "score": np.linspace(0, 1, len(split["test"]["label"]))}
    runs = {"impressions": {0: run}, "id_only": {0: run}}
    rows = [
        {
            "variant": n,
            "seed": 0,
            **bench.point_metrics(run, split["cold_item"], split["cold_user"]),
            "train_wall_s_all_stages": 1.0,
        }
        for n in runs
    ]
    summary = bench.summarize(rows, runs, {}, split, n_resamples=20)
    assert [s["variant"] for s in summary] == ["id_only", "impressions"]
    assert summary[1]["auc_delta"] == pytest.approx(0.0)


def test_cold_docs_split_matches_the_datamodule(bench, tmp_path: Path) -> None:
    from lemur.data import LemurDataModule

    data = write_dataset(tmp_path / "data", *make_tables(n_docs=60, n_days=4))
    plain = bench.load_split(data, val_days=1, test_days=1)
    split = bench.load_split(data, val_days=1, test_days=1, cold_docs=0.3, cold_docs_seed=2)
    dm = LemurDataModule(root=str(data), num_workers=0, val_days=1, test_days=1, cold_docs=0.3, cold_docs_seed=2)
    dm.setup("fit")
    assert split["days"] == plain["days"] == {k: v for k, v in dm.days.items()}
    for name in ("train", "val"):
        assert len(split[name]["label"]) == len(dm.splits[name]) < len(plain[name]["label"])
        assert not np.isin(split[name]["doc_id"], dm.cold_doc_ids).any()
    for key in ("session_id", "doc_id", "label"):  # the same test rows, in the same order
        assert np.array_equal(split["test"][key], plain["test"][key])
    held_in_test = np.isin(split["test"]["doc_id"], dm.cold_doc_ids)
    assert held_in_test.any() and split["cold_item"][held_in_test].all()
    assert split["cold_item"].sum() > plain["cold_item"].sum()
    assert split["cold_docs"] == {"share": 0.3, "seed": 2}
