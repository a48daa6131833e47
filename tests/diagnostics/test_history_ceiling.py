"""diagnostics/history_ceiling.py: taste counts follow the histories, and the script writes its files on tiny."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "diagnostics"))
sys.path.insert(1, str(REPO / "benchmarks"))  # common.py, the scripts' shared helpers


def test_taste_counts_count_matching_history_documents_only() -> None:
    from history_ceiling import impression_counts, taste_counts

    from lemur.data.history import HistoryIndex

    # user 0 clicks docs 0, 1, 2 at t = 1, 2, 3 and is shown doc 3 at t = 4; user 1 clicks doc 2 at t = 1
    user = np.array([0, 0, 0, 0, 1])
    time = np.array([1, 2, 3, 4, 1])
    doc = np.array([0, 1, 2, 3, 2])
    label = np.array([1, 1, 1, 0, 1])
    taste = np.array([5, 7, 5, 5])  # doc 3 shares its taste with docs 0 and 2
    clicks = HistoryIndex.build(user, time, doc, label)
    rows = np.arange(5)
    matches, length = taste_counts(clicks, rows, 8, taste, doc)
    assert length.tolist() == [0, 1, 2, 3, 0]  # strictly earlier clicks of the same user only
    assert matches.tolist() == [0, 0, 1, 2, 0]
    short, short_len = taste_counts(clicks, rows, 1, taste, doc)  # the most recent click only (doc 2, taste 5)
    assert short.tolist() == [0, 0, 0, 1, 0] and short_len.tolist() == [0, 1, 1, 1, 0]
    impressions = HistoryIndex.build(user, time, rows, np.ones_like(label))
    label2 = np.array([1, 0, 1, 0, 1])  # the row-level labels: row 1 (doc 1) was skipped
    shown, clicked = impression_counts(impressions, rows, 8, taste, doc, label2)
    assert shown.tolist() == [0, 0, 1, 2, 0] and clicked.tolist() == [0, 0, 1, 2, 0]


def test_history_ceiling_runs_on_tiny(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "diagnostics/history_ceiling.py"),
        "--preset",
        "tiny",
        "--max-iter",
        "20",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = tmp_path.glob("history-ceiling-tiny-*.json")
    payload = json.loads(result.read_text())
    rows = {r["scorer"]: r for r in payload["rows"]}
    # the oracle rows are the click model's own ceilings, recomputed on the test day
    assert (
        rows["oracle (full click model)"]["qauc"]
        > rows["oracle without tastes"]["qauc"]
        > rows["relevance only"]["qauc"]
    )
    assert rows["same classifier, no history"]["delta_qauc"] == 0.0
    assert all(0.0 < r["auc"] < 1.0 and 0.0 < r["qauc"] < 1.0 for r in rows.values()) and len(rows) == 15
    assert payload["test_day"] == 4 and payload["test_rows"] > 0
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
    bad = subprocess.run(cmd[:2] + ["--preset", "huge"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert bad.returncode != 0 and "--preset 'huge'" in bad.stderr
    bad = subprocess.run(cmd[:2] + ["--set", "no_such_field=1"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert bad.returncode != 0 and "no_such_field=1" in bad.stderr


def test_history_ceiling_set_overrides_the_preset(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "diagnostics/history_ceiling.py"),
        "--preset",
        "tiny",
        "--max-iter",
        "10",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
        "--set",
        "new_user_share=0.5",
        "--set",
        "w_text_taste=1.5",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = tmp_path.glob("history-ceiling-tiny-new_user_share0.5-w_text_taste1.5-*.json")
    payload = json.loads(result.read_text())
    assert payload["overrides"] == {"new_user_share": 0.5, "w_text_taste": 1.5}
    assert payload["same_events_as_data_folder"] is None  # a modified preset is never compared with data/
