"""MIND adapter on a fixture in MIND's exact raw format (two zipped splits + an unlabeled test split)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lemur.cli import main
from lemur.data.adapters import mind
from lemur.data.schema import SchemaError, validate_dataset

NEWS = [
    # news_id, category, subcategory, title, abstract, url, title_entities, abstract_entities
    (
        "N100",
        "sports",
        "football_nfl",
        'The "Bills" win again',
        "Buffalo beat the Jets.",
        "https://assets.msn.com/x",
        "[]",
        "[]",
    ),
    (
        "N200",
        "lifestyle",
        "lifestyleroyals",
        "The Brands Queen Elizabeth Uses",
        "",
        "https://assets.msn.com/y",
        "[]",
        "[]",
    ),
    (
        "N300",
        "news",
        "newsus",
        "Storm hits the coast",
        "Heavy rain expected.",
        "https://assets.msn.com/z",
        '[{"Label": "Rain"}]',
        "[]",
    ),
    ("N400", "finance", "finance-companies", "Stocks rally", "Markets up 2%.", "https://assets.msn.com/w", "[]", "[]"),
]
TRAIN = [
    # impression_id, user_id, time, history, impressions
    ("1", "U7", "11/11/2019 9:05:58 AM", "N300 N200", "N100-1 N400-0 N999-0"),  # N999 is not in news.tsv
    ("2", "U8", "11/11/2019 3:10:02 PM", "", "N100-0 N200-1"),  # empty history
    ("3", "U7", "11/12/2019 8:00:00 AM", "N300 N200", "N300-0 N400-1 N200-0"),
]
DEV = [
    ("1", "U8", "11/13/2019 10:11:12 AM", "", "N300-1 N400-0"),
    ("2", "U9", "11/13/2019 11:11:12 PM", "N400", "N100-0 N200-0 N300-1"),
]
TEST = [("1", "U9", "11/14/2019 9:00:00 AM", "N400", "N100 N200")]  # MIND-large test: no labels


def _tsv(rows) -> str:
    return "".join("\t".join(r) + "\n" for r in rows)


def write_split(folder: Path, name: str, behaviors, news=NEWS, as_zip: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"behaviors.tsv": _tsv(behaviors), "news.tsv": _tsv(news), "entity_embedding.vec": "Q1\t0.1 0.2\n"}
    if as_zip:
        with zipfile.ZipFile(folder / f"{name}.zip", "w") as zf:
            for member, text in files.items():
                zf.writestr(member, text)
    else:
        for member, text in files.items():
            (folder / name).mkdir(exist_ok=True)
            (folder / name / member).write_text(text)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    write_split(root, "MINDsmall_train", TRAIN)
    write_split(root, "MINDsmall_dev", DEV, as_zip=False)
    write_split(root, "MINDlarge_test", TEST)
    return root


def _sessions(events) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for row in events.to_pylist():
        out.setdefault(row["session_id"], []).append(row)
    return dict(sorted(out.items()))


def test_convert(raw: Path, tmp_path: Path) -> None:
    summary = mind.convert(raw, tmp_path / "out", log=lambda *_: None)
    docs, events = validate_dataset(tmp_path / "out")
    assert summary["impressions"] == 5 and summary["unlabeled_impressions_skipped"] == 1
    assert events.num_rows == 3 + 2 + 3 + 2 + 3  # every labelled shown news is a row
    sessions = _sessions(events)
    assert [len(v) for v in sessions.values()] == [3, 2, 3, 2, 3]  # numbered by time
    assert all(len({r["timestamp"] for r in rows}) == 1 for rows in sessions.values())
    # labels from the -1/-0 suffixes, IDs from the N/U numbers
    first = sessions[0]
    assert [r["doc_id"] for r in first] == [100, 400, 999] and [r["label"] for r in first] == [1, 0, 0]
    assert {r["user_id"] for r in first} == {7}
    # news missing from news.tsv is kept with empty text; the quote in a title survives (no CSV quoting)
    d = {r["doc_id"]: r for r in docs.to_pylist()}
    assert summary["news_missing_from_news_tsv"] == 1
    assert (d[999]["title"], d[999]["ocr"], d[999]["cover_text"]) == (None, None, None)
    assert d[100]["title"] == 'The "Bills" win again' and d[100]["cover_text"] == "sports football nfl"
    assert d[200]["ocr"] is None and summary["news_without_abstract"] == 1  # empty abstract -> null field
    # trigger query: earlier click in the logs, else the history column's last entry, else empty
    q = [rows[0]["query"] for rows in sessions.values()]
    assert q[0] == "The Brands Queen Elizabeth Uses"  # U7: last history entry N200
    assert q[1] == ""  # U8: empty history, no earlier click
    assert q[2] == 'The "Bills" win again'  # U7: clicked N100 in impression 1
    assert q[3] == "The Brands Queen Elizabeth Uses"  # U8: clicked N200 in impression 2
    assert q[4] == "Stocks rally"  # U9: history N400
    day = events["day"].to_numpy()
    assert day.min() == 0 and day.max() == 2 and (events["cat_hour"].to_numpy() >= 1).all()
    saved = json.loads((tmp_path / "out" / "mind.json").read_text())
    assert saved["rows"] == events.num_rows and saved["sessions_with_empty_history_and_no_earlier_click"] == 1


def test_history_rows(raw: Path, tmp_path: Path) -> None:
    summary = mind.convert(raw, tmp_path / "out", history_rows=True, log=lambda *_: None)
    _, events = validate_dataset(tmp_path / "out")
    rows = events.to_pylist()
    hist = [r for r in rows if r["cat_from_history"] == 2]
    assert summary["history_rows"] == 3  # U7: N300 N200, U9: N400 (each user once)
    assert sorted((r["user_id"], r["doc_id"]) for r in hist) == [(7, 200), (7, 300), (9, 400)]
    assert all(r["label"] == 1 and r["day"] == 0 for r in hist)
    assert min(r["day"] for r in rows if r["cat_from_history"] == 1) == 1


def test_bad_line_names_file_and_value(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    write_split(root, "MINDsmall_train", [("1", "X7", "11/11/2019 9:05:58 AM", "", "N100-1")])
    with pytest.raises(SchemaError, match=r"behaviors.tsv: column 'user_id', row 0, value 'X7'"):
        mind.convert(root, tmp_path / "out", log=lambda *_: None)


def test_cli_offline_message(tmp_path: Path, capsys, monkeypatch) -> None:
    """--download when the hosts cannot be reached: the message says what to do by hand."""
    dead = "http://127.0.0.1:9/"  # discard port: connection refused
    monkeypatch.setitem(mind.RESOURCES, "small", (mind.Resource(dead + "MINDsmall_train.zip", "MINDsmall_train.zip"),))
    code = main(["data", "mind", "--download", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert "could not download MINDsmall_train.zip" in err and "offline" in err and "without --download" in err
    assert not (tmp_path / "out" / "events.parquet").exists()


def test_cli_converts(raw: Path, tmp_path: Path, capsys) -> None:
    assert main(["data", "mind", "--raw", str(raw), "--out", str(tmp_path / "out")]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["data", "validate", str(tmp_path / "out")]) == 0
    # a second run refuses to overwrite without --force
    assert main(["data", "mind", "--raw", str(raw), "--out", str(tmp_path / "out")]) == 1
    assert np.unique(pq.read_table(tmp_path / "out" / "events.parquet")["session_id"].to_numpy()).size == 5
