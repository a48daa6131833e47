"""MicroLens adapter on a fixture in MicroLens-100k's raw format (pairs CSV, headerless titles, covers zip)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lemur.cli import main
from lemur.data.adapters import microlens
from lemur.data.schema import SchemaError, validate_dataset

T0 = 1_672_531_200_000  # 2023-01-01 00:00 UTC, in ms
HOUR = 3_600_000
# user, item, timestamp (ms); items 1-8; user 10 watches 1 then 2 then 3, user 11 ...
PAIRS = [
    (10, 1, T0),
    (10, 2, T0 + HOUR),
    (10, 3, T0 + 30 * HOUR),
    (11, 4, T0 + 2 * HOUR),
    (11, 5, T0 + 3 * HOUR),
    (12, 6, T0 + HOUR),
    (12, 7, T0 + 2 * HOUR),
    (13, 8, T0 + 4 * HOUR),
    (13, 1, T0 + 5 * HOUR),
    (11, 2, T0 + 26 * HOUR),
    (12, 3, T0 + 28 * HOUR),
    (13, 4, T0 + 29 * HOUR),
]
TITLES = {
    1: "cat video, very funny",
    2: 'a "quoted" title',
    3: "cooking # food",
    4: "",
    5: "dance",
    6: "game, play, win",
    7: "travel",
    8: "music 🎵",
}


def jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    root.mkdir()
    rows = PAIRS + [PAIRS[0]]  # an exact duplicate row
    (root / "MicroLens-100k_pairs.csv").write_text(
        "user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows)
    )
    # no header, unquoted commas inside titles (except one quoted), UTF-8 with a BOM
    lines = [f"{i},{t}" if i != 2 else f'{i},"a ""quoted"" title"' for i, t in TITLES.items()]
    (root / "MicroLens-100k_title_en.csv").write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode("utf-8"))
    with zipfile.ZipFile(root / "MicroLens-100k_covers.zip", "w") as zf:
        for i in (1, 2, 3, 4, 5, 6):
            zf.writestr(f"MicroLens-100k_covers/{i}.jpg", jpeg((i * 30, 10, 10)))
        zf.writestr("MicroLens-100k_covers/7.jpg", b"<html>404 not found</html>")  # a broken cover
        # item 8 has no cover at all
    return root


def quiet(*_args) -> None:
    pass


def test_convert(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = microlens.convert(raw, out, negatives=2, log=quiet)
    docs, events = validate_dataset(out)
    rows = events.to_pylist()
    pos = [r for r in rows if r["label"] == 1]
    neg = [r for r in rows if r["label"] == 0]
    assert summary["duplicate_rows_dropped"] == 1 and len(pos) == len(PAIRS)
    assert len(neg) == 2 * len(PAIRS) - summary["negatives_short"] and len(neg) > 0
    watched = {(u, i) for u, i, _ in PAIRS}
    assert all((r["user_id"], r["doc_id"]) not in watched for r in neg)  # never an item the user watched
    # a session = one watch + its negatives, one time, one user
    sessions: dict[int, list[dict]] = {}
    for r in rows:
        sessions.setdefault(r["session_id"], []).append(r)
    assert len(sessions) == len(PAIRS)
    for members in sessions.values():
        assert sum(r["label"] for r in members) == 1
        assert len({r["timestamp"] for r in members}) == 1 and len({r["user_id"] for r in members}) == 1
    # negatives come from items others watched within +-1 day of the watch
    times = {}
    for _u, i, t in PAIRS:
        times.setdefault(i, []).append(t)
    for r in neg:
        assert min(abs(t - r["timestamp"]) for t in times[r["doc_id"]]) <= 24 * HOUR
    # the trigger query: the previous watch's title
    query = {(r["user_id"], r["doc_id"]): r["query"] for r in pos}
    assert query[(10, 1)] == "" and query[(10, 2)] == "cat video, very funny" and query[(10, 3)] == 'a "quoted" title'
    assert query[(13, 1)] == "music 🎵"
    d = {r["doc_id"]: r for r in docs.to_pylist()}
    assert d[6]["title"] == "game, play, win" and d[4]["title"] is None and summary["videos_without_title"] == 1
    # covers: copied and decodable; broken and missing ones leave the document without an image
    assert summary["images"] == {"with_image": 6, "broken": 1, "missing": 1}
    assert d[7]["image_path"] is None and d[8]["image_path"] is None
    with Image.open(out / d[1]["image_path"]) as img:
        assert img.size == (8, 8)
    day = events["day"].to_numpy()
    assert day.min() == 0 and day.max() == 1  # Beijing-time days: T0 is 08:00 there


def test_seeded_negatives_and_no_images(raw: Path, tmp_path: Path) -> None:
    a = microlens.convert(raw, tmp_path / "a", negatives=3, images=False, seed=5, log=quiet)
    microlens.convert(raw, tmp_path / "b", negatives=3, images=False, seed=5, log=quiet)
    ta, tb = validate_dataset(tmp_path / "a")[1], validate_dataset(tmp_path / "b")[1]
    assert ta.equals(tb) and a["images"]["with_image"] == 0
    assert "image_path" not in validate_dataset(tmp_path / "a")[0].column_names


def test_bad_timestamp_named(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    (root / "MicroLens-100k_pairs.csv").write_text("user,item,timestamp\n1,2,1672531200000\n1,3,yesterday\n")
    with pytest.raises(SchemaError, match=r"MicroLens-100k_pairs.csv: column 'timestamp', row 1, value 'yesterday'"):
        microlens.convert(root, tmp_path / "out", log=quiet)
    with pytest.raises(SchemaError, match="MicroLens-100k_pairs.csv: not found"):
        microlens.convert(tmp_path / "out", tmp_path / "out2", log=quiet)  # a folder without the files


def test_cli(raw: Path, tmp_path: Path, capsys) -> None:
    assert main(["data", "microlens", "--raw", str(raw), "--out", str(tmp_path / "out"), "--negatives", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 broken cover images" in out and "6 cover images written" in out
    labels = validate_dataset(tmp_path / "out")[1]["label"].to_numpy()
    assert np.isin(labels, [0, 1]).all() and labels.sum() == len(PAIRS)
