"""Amazon Reviews 2023 adapter on a fixture in the dataset's JSONL format (reviews gzipped, meta plain)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from lemur.cli import main
from lemur.data.adapters import amazon_reviews
from lemur.data.schema import SchemaError, validate_dataset

MS = 1_000
T0 = 1_588_615_855_070  # a real-looking ms timestamp (2020-05-04)
DAY = 86_400 * MS


def review(user, asin, rating, ts, **extra):
    return {
        "rating": rating,
        "title": "ok",
        "text": "fine product",
        "images": [],
        "asin": asin + "-v",
        "parent_asin": asin,
        "user_id": user,
        "timestamp": ts,
        "helpful_vote": 0,
        "verified_purchase": True,
        **extra,
    }


REVIEWS = [
    review("AGKHLEW2", "B01", 5.0, T0),
    review("AGKHLEW2", "B02", 2.0, T0 + 60 * MS),  # same day: same session
    review("AGKHLEW2", "B03", 4.0, T0 + 2 * DAY, verified_purchase=False),
    review("AE3Q", "B02", 4.0, T0 + DAY),
    review("AE3Q", "B04", 1.0, T0 + 3 * DAY),  # B04 has no meta record
]


def meta(asin, title, images, **extra):
    return {
        "main_category": "All Beauty",
        "title": title,
        "average_rating": 4.1,
        "rating_number": 10,
        "features": ["soft", "vegan"],
        "description": ["A nice product."],
        "price": None,
        "images": images,
        "videos": [],
        "store": "Acme",
        "categories": [],
        "details": {"Brand": "Acme"},
        "parent_asin": asin,
        "bought_together": None,
        **extra,
    }


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    root.mkdir()
    good = tmp_path / "img" / "b01.jpg"
    good.parent.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), (200, 30, 30)).save(buf, format="JPEG")
    good.write_bytes(buf.getvalue())
    lines = [json.dumps(r) for r in REVIEWS]
    lines.insert(2, "{not json")  # a malformed line
    lines.append(json.dumps({"rating": 5.0, "parent_asin": "B01", "timestamp": T0}))  # no user_id
    with gzip.open(root / "All_Beauty.jsonl.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    metas = [
        meta("B01", "Rose Oil", [{"thumb": "x", "large": good.as_uri(), "variant": "MAIN", "hi_res": None}]),
        meta(
            "B02",
            "Hand Cream",
            [{"thumb": (tmp_path / "img" / "gone.jpg").as_uri(), "large": None, "variant": "MAIN", "hi_res": None}],
            description=[],
            features=[],
        ),  # broken image link, no description
        meta("B03", None, [], store=None, categories=["Beauty", "Skin Care"]),  # no title, no image
        meta("B99", "Never reviewed", []),
    ]
    (root / "meta_All_Beauty.jsonl").write_text("\n".join(json.dumps(m) for m in metas) + "\n")
    return root


def quiet(*_args) -> None:
    pass


def test_convert(raw: Path, tmp_path: Path) -> None:
    summary = amazon_reviews.convert(raw, tmp_path / "out", category="All_Beauty", log=quiet)
    docs, events = validate_dataset(tmp_path / "out")
    rows = events.to_pylist()
    assert summary["reviews"] == 5 and summary["malformed_review_lines"] == 1 and summary["reviews_missing_fields"] == 1
    d = {r["parent_asin"]: r for r in docs.to_pylist()}
    assert sorted(d) == ["B01", "B02", "B03", "B04"]  # reviewed items only
    assert (
        d["B01"]["title"] == "Rose Oil"
        and d["B01"]["ocr"] == "soft vegan A nice product."
        and d["B01"]["cover_text"] == "Acme"
    )
    assert d["B02"]["ocr"] is None and d["B03"]["title"] is None and d["B03"]["cover_text"] == "Beauty Skin Care"
    assert d["B04"]["title"] is None and summary["items_without_meta"] == 1
    assert d["B01"]["image_url"].startswith("file://") and d["B03"]["image_url"] is None
    by = {(r["reviewer"], d_id): r for r in rows for d_id in [r["doc_id"]]}
    doc_id = {k: v["doc_id"] for k, v in d.items()}
    first = by[("AGKHLEW2", doc_id["B01"])]
    second = by[("AGKHLEW2", doc_id["B02"])]
    third = by[("AGKHLEW2", doc_id["B03"])]
    assert first["label"] == 1 and second["label"] == 0 and third["label"] == 1  # rating >= 4
    assert first["session_id"] == second["session_id"] and first["timestamp"] == second["timestamp"] == T0
    assert third["session_id"] != first["session_id"] and third["cat_verified"] == 1 and first["cat_verified"] == 2
    assert first["query"] == "" and third["query"] == "Rose Oil"  # last liked item before the session
    assert by[("AE3Q", doc_id["B04"])]["query"] == "Hand Cream"
    assert {r["user_id"] for r in rows} == {1, 2}


def test_images_broken_links_counted(raw: Path, tmp_path: Path, capsys) -> None:
    summary = amazon_reviews.convert(raw, tmp_path / "out", category="All_Beauty", images=True)
    docs, _ = validate_dataset(tmp_path / "out")
    d = {r["parent_asin"]: r for r in docs.to_pylist()}
    assert summary["images"] == {"with_image": 1, "broken": 1, "missing": 2}
    assert d["B01"]["image_path"] == f"images/{d['B01']['doc_id']}.jpg" and d["B02"]["image_path"] is None
    assert (tmp_path / "out" / d["B01"]["image_path"]).exists()
    printed = capsys.readouterr().out
    assert "1 broken cover images" in printed and "gone.jpg" in printed  # counted, with the failing link


def test_missing_files_and_category(raw: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SchemaError, match=r"Books.jsonl: .*not found"):
        amazon_reviews.convert(raw, tmp_path / "out", category="Books", log=quiet)
    # without --category the files found in --raw are used
    assert main(["data", "amazon-reviews", "--raw", str(raw), "--out", str(tmp_path / "cli")]) == 0
    assert main(["data", "amazon-reviews", "--download", "--raw", str(raw), "--out", str(tmp_path / "cli2")]) == 1
    assert "--download needs --category" in capsys.readouterr().err
