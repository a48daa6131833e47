"""Amazon Reviews 2023 (McAuley Lab) -> lemur's schema.

Raw files for one category, e.g. ``All_Beauty`` (JSON Lines, one object per line, maybe gzipped):

``All_Beauty.jsonl(.gz)``       reviews: ``rating`` (1.0-5.0), ``title``, ``text``, ``images`` (list),
                                ``asin``, ``parent_asin``, ``user_id``, ``timestamp`` (ms),
                                ``helpful_vote``, ``verified_purchase``
``meta_All_Beauty.jsonl(.gz)``  items: ``main_category``, ``title``, ``average_rating``, ``rating_number``,
                                ``features`` (list of str), ``description`` (list of str), ``price``,
                                ``images`` (list of {thumb, large, variant, hi_res}), ``videos``, ``store``,
                                ``categories`` (list), ``details`` (dict), ``parent_asin``, ``bought_together``

Mapping: documents = items (``parent_asin``; doc_id = its rank in sorted order, the string kept in
column ``parent_asin``): ``title`` = meta title, ``ocr`` = features + description (the long text),
``cover_text`` = store and categories (or main category). With ``images=True`` the MAIN image
(``hi_res``, else ``large``, else ``thumb``) is fetched into ``images/<doc_id>.jpg``; a broken link
or undecodable file leaves the item without an image (counted, examples printed). Rows = reviews,
label = rating >= 4 (most reviews are positive: ~80%); user_id = rank of the reviewer string
(kept in column ``reviewer``); sessions = a reviewer's reviews within one UTC day, timestamp = the
day's first review (ms); query = the trigger, the title of the item the user last rated >= 4
before the session. ``cat_verified`` = verified purchase (2) or not (1). Reviews of items without
meta, items without title/description, and malformed lines (skipped) are counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from lemur.data.adapters._common import RawFiles, add_common_arguments, download_all, open_lines, save_images
from lemur.data.convert import day_index, last_positive_before, prepare_output, window_sessions, write_dataset
from lemur.data.download import Resource
from lemur.data.schema import SchemaError

_BASE = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw/"


def resources(category: str) -> tuple[Resource, Resource]:
    return (
        Resource(f"{_BASE}review_categories/{category}.jsonl.gz", f"{category}.jsonl.gz"),
        Resource(f"{_BASE}meta_categories/meta_{category}.jsonl.gz", f"meta_{category}.jsonl.gz"),
    )


def _records(location: str, skipped: list[int], log=print):
    """Parsed JSON objects of a JSONL file; malformed lines are skipped and counted in ``skipped[0]``."""
    from tqdm import tqdm

    for i, line in enumerate(
        tqdm(open_lines(location), desc=Path(location.split("!")[-1]).name, unit=" lines", mininterval=2)
    ):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped[0] += 1
            if skipped[0] <= 3:
                log(f"  {location}: line {i + 1} is not JSON, skipped")
            continue
        if isinstance(record, dict):
            yield record
        else:
            skipped[0] += 1


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value if v is not None).strip()
    return str(value).strip()


def _main_image(images) -> str | None:
    if not isinstance(images, list) or not images:
        return None
    main = [im for im in images if isinstance(im, dict) and str(im.get("variant", "")).upper() == "MAIN"]
    for im in main + [im for im in images if isinstance(im, dict)]:
        for key in ("hi_res", "large", "thumb"):
            if im.get(key):
                return str(im[key])
    return None


def _find(files: RawFiles, category: str | None, meta: bool) -> str:
    names = []
    if category:
        stem = f"meta_{category}" if meta else category
        names = [f"{stem}.jsonl", f"{stem}.jsonl.gz"]
        found = [x for n in names for x in files.find(n)]
    else:
        found = sorted(str(p) for p in files.root.rglob("*.jsonl*") if p.name.startswith("meta_") == meta)
    if not found:
        what = "item metadata (meta_<Category>.jsonl[.gz])" if meta else "reviews (<Category>.jsonl[.gz])"
        raise SchemaError(
            files.root / (names[0] if names else ""),
            None,
            f"{what} not found; pass --download --category NAME, or put the files from {_BASE} there",
        )
    return found[0]


def convert(
    raw: str | Path,
    out: str | Path,
    *,
    category: str | None = None,
    positive_rating: float = 4.0,
    images: bool = False,
    force: bool = False,
    log=print,
) -> dict:
    files = RawFiles(raw)
    reviews_loc = _find(files, category, meta=False)
    meta_loc = _find(files, category, meta=True)
    out = prepare_output(out, force)

    bad_reviews, no_fields = [0], 0
    users, items, stamps, ratings, verified = [], [], [], [], []
    log(f"reading {reviews_loc}")
    for r in _records(reviews_loc, bad_reviews, log):
        item = r.get("parent_asin") or r.get("asin")
        try:
            user, ts, rating = str(r["user_id"]), int(r["timestamp"]), float(r["rating"])
        except (KeyError, TypeError, ValueError):
            no_fields += 1
            continue
        if not item:
            no_fields += 1
            continue
        users.append(user), items.append(str(item)), stamps.append(ts), ratings.append(rating)
        verified.append(2 if r.get("verified_purchase") is True else 1)
    if not users:
        raise SchemaError(
            reviews_loc, None, "no usable reviews (each needs user_id, parent_asin, timestamp and rating)"
        )
    log(
        f"  {len(users):,} reviews ({bad_reviews[0]:,} malformed lines and {no_fields:,} reviews missing "
        "user_id/parent_asin/timestamp/rating skipped)"
    )

    reviewed = set(items)
    meta: dict[str, dict] = {}
    bad_meta = [0]
    log(f"reading {meta_loc}")
    for m in _records(meta_loc, bad_meta, log):
        key = m.get("parent_asin")
        if key in reviewed and key not in meta:
            meta[key] = {
                "title": _text(m.get("title")) or None,
                "ocr": _text([m.get("features"), m.get("description")]) or None,
                "cover_text": _text([m.get("store"), m.get("categories")]) or _text(m.get("main_category")) or None,
                "image": _main_image(m.get("images")),
            }

    asins = np.asarray(sorted(reviewed), dtype=object)
    item_rank = np.searchsorted(asins, np.asarray(items, dtype=object))
    doc_ids = np.arange(1, len(asins) + 1, dtype=np.int64)
    doc = doc_ids[item_rank]
    reviewers, user_id = np.unique(np.asarray(users, dtype=object), return_inverse=True)
    user_id = user_id.astype(np.int64) + 1
    ms = np.asarray(stamps, np.int64)
    label = (np.asarray(ratings) >= positive_rating).astype(np.int8)
    session, session_s = window_sessions(user_id, ms // 1000, 86_400)
    first_ms = np.full(int(session.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_ms, session, ms)
    session_ms = first_ms[session]

    rows_meta = [meta.get(a, {}) for a in asins]
    titles = np.asarray([m.get("title") or "" for m in rows_meta], dtype=object)
    sessions, first_row = np.unique(session, return_index=True)
    trigger = last_positive_before(user_id, ms, label == 1, user_id[first_row], session_ms[first_row])
    query = np.where(trigger >= 0, titles[item_rank[np.maximum(trigger, 0)]], "")[np.searchsorted(sessions, session)]

    columns = {
        "doc_id": pa.array(doc_ids, pa.int64()),
        "title": pa.array([m.get("title") for m in rows_meta], pa.string()),
        "ocr": pa.array([m.get("ocr") for m in rows_meta], pa.string()),
        "cover_text": pa.array([m.get("cover_text") for m in rows_meta], pa.string()),
        "parent_asin": pa.array(asins.tolist(), pa.string()),
    }
    image_counts = None
    if images:
        paths, image_counts = save_images({int(d): m.get("image") for d, m in zip(doc_ids, rows_meta)}, out, log=log)
        columns["image_path"] = pa.array([paths.get(int(d)) for d in doc_ids], pa.string())
    else:
        columns["image_url"] = pa.array([m.get("image") for m in rows_meta], pa.string())
    docs = pa.table(columns)
    events = pa.table(
        {
            "timestamp": pa.array(session_ms, pa.int64()),
            "day": pa.array(day_index(session_s), pa.int32()),
            "user_id": pa.array(user_id, pa.int64()),
            "session_id": pa.array(session, pa.int64()),
            "query": pa.array(query.tolist(), pa.string()),
            "doc_id": pa.array(doc, pa.int64()),
            "label": pa.array(label, pa.int8()),
            "cat_verified": pa.array(np.asarray(verified, np.int64), pa.int64()),
            "reviewer": pa.array(reviewers[user_id - 1].tolist(), pa.string()),
            "rating": pa.array(np.asarray(ratings, np.float32)),
        }
    )
    no_meta = sum(1 for a in asins if a not in meta)
    summary = {
        "dataset": f"Amazon Reviews 2023{f' ({category})' if category else ''}",
        "raw": [reviews_loc, meta_loc],
        "reviews": len(users),
        "malformed_review_lines": bad_reviews[0],
        "reviews_missing_fields": no_fields,
        "malformed_meta_lines": bad_meta[0],
        "items_without_meta": no_meta,
        "items_without_title": int(sum(1 for m in rows_meta if not m.get("title"))),
        "items_without_description": int(sum(1 for m in rows_meta if not m.get("ocr"))),
        "items_without_image_url": int(sum(1 for m in rows_meta if not m.get("image"))),
        "images": image_counts,
    }
    if no_meta:
        log(f"  {no_meta:,} reviewed items have no meta record: they keep empty text")
    return write_dataset(out, docs, events, summary, "amazon_reviews", log=log)


COMMAND = "amazon-reviews"
HELP = "Amazon Reviews 2023: reviews (label = rating >= 4) + item titles, descriptions and images of one category"


def add_arguments(parser) -> None:
    add_common_arguments(parser, "<Category>.jsonl.gz + meta_<Category>.jsonl.gz")
    parser.add_argument(
        "--category", default=None, help="e.g. All_Beauty (required with --download; default: the files found in --raw)"
    )
    parser.add_argument("--positive-rating", type=float, default=4.0, help="label = rating >= this (default: 4)")
    parser.add_argument("--images", action="store_true", help="fetch each item's MAIN image (broken links are counted)")


def main(args) -> int:
    if args.download:
        if not args.category:
            raise ValueError("--download needs --category (e.g. All_Beauty)")
        download_all(resources(args.category), args.raw)
    convert(
        args.raw,
        args.out,
        category=args.category,
        positive_rating=args.positive_rating,
        images=args.images,
        force=args.force,
    )
    return 0
