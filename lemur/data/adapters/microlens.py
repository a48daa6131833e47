"""MicroLens (micro-video recommendation with raw titles and cover images) -> lemur's schema.

Raw files (https://recsys.westlake.edu.cn/MicroLens-100k-Dataset/, likewise for 50k):

``MicroLens-100k_pairs.csv``     header ``user,item,timestamp`` (timestamp in milliseconds); one row
                                 per watched video, positives only
``MicroLens-100k_title_en.csv``  no header, ``item,title``; titles contain unquoted commas (split at
                                 the first one), may be empty; UTF-8, maybe with a BOM
                                 (MicroLens-50k: ``MicroLens-50k_titles.csv`` with an ``item,title`` header)
``MicroLens-100k_covers.zip``    or a folder of them: ``<item>.jpg`` cover images

Mapping: documents = videos: ``title`` = title, ``image_path`` = ``covers/<item>.jpg`` copied into the
output folder after a decode check (a missing or undecodable cover -> no image, counted). The logs
hold positives only, so each watch becomes a *pseudo-impression* session: the watched video (label 1)
plus ``negatives`` videos drawn from what other users watched within +-1 day (popularity at the
time) that this user never watched (label 0); all rows of the session share the watch's time. The
query slot holds the trigger: the title of the user's previous watch (empty for the first). Days are
Beijing-time calendar days. Exact duplicate (user, item, time) rows are dropped and counted.
"""

from __future__ import annotations

import csv
import io
import re
import threading
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from lemur.data.adapters._common import RawFiles, add_common_arguments, download_all, read_bytes, save_images
from lemur.data.convert import day_index, last_positive_before, prepare_output, sample_negatives, write_dataset
from lemur.data.download import Resource
from lemur.data.schema import SchemaError

BEIJING = 8 * 3600
_SITE = "https://recsys.westlake.edu.cn/MicroLens-{v}-Dataset/"
RESOURCES = {
    v: (
        Resource(
            _SITE.format(v=v) + f"MicroLens-{v}_pairs.csv",
            f"MicroLens-{v}_pairs.csv",
            size="~20 MB" if v == "100k" else "~10 MB",
        ),
        Resource(
            _SITE.format(v=v) + (f"MicroLens-{v}_title_en.csv" if v == "100k" else f"MicroLens-{v}_titles.csv"),
            f"MicroLens-{v}_title_en.csv" if v == "100k" else f"MicroLens-{v}_titles.csv",
            size="~2 MB",
        ),
        Resource(_SITE.format(v=v) + f"MicroLens-{v}_covers.zip", f"MicroLens-{v}_covers.zip", size="~700 MB"),
    )
    for v in ("100k", "50k")
}


def _read_pairs(location: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    text = read_bytes(location).decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    names = {
        "user": ("user", "userid", "user_id"),
        "item": ("item", "videoid", "item_id", "video_id"),
        "timestamp": ("timestamp", "time"),
    }
    cols = {}
    for key, options in names.items():
        found = [i for i, h in enumerate(header) if h in options]
        if not found:
            raise SchemaError(location, key, f"header {header} lacks a {key} column (expected user,item,timestamp)")
        cols[key] = found[0]
    rows = [r for r in reader if r]
    out = []
    for key in ("user", "item", "timestamp"):
        values = [r[cols[key]] if len(r) > cols[key] else "" for r in rows]
        try:
            out.append(np.asarray(values, dtype=np.float64).astype(np.int64))
        except ValueError:
            row = next(i for i, v in enumerate(values) if not re.fullmatch(r"\s*-?\d+(\.\d*)?([eE][+-]?\d+)?\s*", v))
            raise SchemaError(location, key, f"not a number (line {row + 2})", row=row, value=values[row]) from None
    return out[0], out[1], out[2]


def _read_titles(location: str) -> dict[int, str]:
    """``item,title`` lines (header optional); only the first comma separates, quotes are honoured."""
    titles = {}
    for i, line in enumerate(read_bytes(location).decode("utf-8-sig").splitlines()):
        if not line.strip():
            continue
        head, _, rest = line.partition(",")
        if not head.strip().isdigit():
            if i == 0:
                continue  # a header line
            raise SchemaError(location, "item", f"not an item number (line {i + 1})", row=i, value=head)
        rest = rest.strip()
        if len(rest) >= 2 and rest[0] == rest[-1] == '"':
            rest = rest[1:-1].replace('""', '"')
        titles[int(head)] = rest
    return titles


def _cover_sources(files: RawFiles, items: np.ndarray) -> dict[int, object]:
    """doc_id -> a loader of its cover bytes (a file below ``raw`` or a member of a zip there), or None."""
    wanted = {int(i) for i in items}
    sources: dict[int, object] = {int(i): None for i in items}
    pattern = re.compile(r"(?:^|/)(\d+)\.(?:jpe?g|png|webp)$", re.IGNORECASE)
    for path in sorted(files.root.rglob("*")):
        m = pattern.search(path.as_posix())
        if m and int(m.group(1)) in wanted and sources[int(m.group(1))] is None and path.is_file():
            sources[int(m.group(1))] = path.read_bytes
    for archive in sorted(files.root.rglob("*.zip")):
        zf = zipfile.ZipFile(archive)  # kept open while the loaders run (reads are serialised by a lock)
        lock = threading.Lock()

        def loader(name: str, zf=zf, lock=lock):
            def read() -> bytes:
                with lock:
                    return zf.read(name)

            return read

        for member in zf.namelist():
            m = pattern.search(member)
            if m and int(m.group(1)) in wanted and sources[int(m.group(1))] is None:
                sources[int(m.group(1))] = loader(member)
    return sources


def convert(
    raw: str | Path,
    out: str | Path,
    *,
    negatives: int = 4,
    images: bool = True,
    seed: int = 0,
    force: bool = False,
    log=print,
) -> dict:
    if negatives < 1:
        raise ValueError(f"negatives must be >= 1 (the logs hold positives only), got {negatives}")
    files = RawFiles(raw)
    pairs = [p for p in files.find("MicroLens-100k_pairs.csv") + files.find("MicroLens-50k_pairs.csv")]
    if not pairs:
        raise SchemaError(
            files.root / "MicroLens-100k_pairs.csv",
            None,
            "not found (nor MicroLens-50k_pairs.csv); pass --download "
            "or put the files from https://recsys.westlake.edu.cn/MicroLens-100k-Dataset/ there",
        )
    titles_loc = files.find("MicroLens-100k_title_en.csv") + files.find("MicroLens-50k_titles.csv")
    out = prepare_output(out, force)
    log(f"reading {pairs[0]}")
    user, item, ms = _read_pairs(pairs[0])
    key = np.stack([user, item, ms], 1)
    _, first = np.unique(key, axis=0, return_index=True)
    duplicates = len(user) - len(first)
    first.sort()
    user, item, ms = user[first], item[first], ms[first]
    log(
        f"  {len(user):,} watches ({duplicates:,} exact duplicates dropped), {len(np.unique(user)):,} users, "
        f"{len(np.unique(item)):,} videos"
    )
    titles = _read_titles(titles_loc[0]) if titles_loc else {}
    if not titles_loc:
        log("  no titles file found: documents get no title")

    # ---- pseudo-impressions: each watch + sampled unwatched videos
    neg_row, neg_item = sample_negatives(user, item, ms, negatives, window=86_400_000, seed=seed)
    short = len(user) * negatives - len(neg_row)
    session_of_pos = np.empty(len(user), np.int64)
    by_time = np.lexsort((user, ms))
    session_of_pos[by_time] = np.arange(len(user))
    rows_user = np.concatenate([user, user[neg_row]])
    rows_item = np.concatenate([item, neg_item])
    rows_ms = np.concatenate([ms, ms[neg_row]])
    rows_session = np.concatenate([session_of_pos, session_of_pos[neg_row]])
    rows_label = np.concatenate([np.ones(len(user), np.int8), np.zeros(len(neg_row), np.int8)])

    # ---- trigger query: the previous watch's title
    prev = last_positive_before(user, ms, np.ones(len(user), bool), user, ms)
    title_arr = np.asarray([titles.get(int(i), "") for i in item], dtype=object)
    session_query = np.where(prev >= 0, title_arr[np.maximum(prev, 0)], "")
    query = session_query[np.concatenate([np.arange(len(user)), neg_row])]

    # ---- documents
    doc_ids = np.unique(rows_item)
    no_title = [int(d) for d in doc_ids if not titles.get(int(d), "").strip()]
    image_paths, image_counts = {}, {"with_image": 0, "broken": 0, "missing": len(doc_ids)}
    if images:
        image_paths, image_counts = save_images(_cover_sources(files, doc_ids), out, folder="covers", log=log)
    columns = {
        "doc_id": pa.array(doc_ids, pa.int64()),
        "title": pa.array([titles.get(int(d), "").strip() or None for d in doc_ids], pa.string()),
    }
    if images:
        columns["image_path"] = pa.array([image_paths.get(int(d)) for d in doc_ids], pa.string())
    docs = pa.table(columns)
    seconds = rows_ms // 1000
    events = pa.table(
        {
            "timestamp": pa.array(rows_ms, pa.int64()),
            "day": pa.array(day_index(seconds, BEIJING), pa.int32()),
            "user_id": pa.array(rows_user, pa.int64()),
            "session_id": pa.array(rows_session, pa.int64()),
            "query": pa.array(query.tolist(), pa.string()),
            "doc_id": pa.array(rows_item, pa.int64()),
            "label": pa.array(rows_label, pa.int8()),
            "cat_hour": pa.array((seconds + BEIJING) // 3600 % 24 + 1, pa.int64()),
        }
    )
    summary = {
        "dataset": "MicroLens",
        "raw": pairs[:1] + titles_loc[:1],
        "watches": int(len(user)),
        "duplicate_rows_dropped": int(duplicates),
        "negatives_per_watch": negatives,
        "negatives_short": int(short),
        "videos_without_title": len(no_title),
        "images": image_counts,
        "first_watches_with_empty_query": int((session_query == "").sum()),
    }
    if no_title:
        log(f"  {len(no_title):,} videos have no title")
    return write_dataset(out, docs, events, summary, "microlens", log=log)


COMMAND = "microlens"
HELP = "MicroLens-100k/50k: micro-video watches, titles and cover images (negatives sampled)"


def add_arguments(parser) -> None:
    add_common_arguments(parser, "pairs + titles + covers zip, ~720 MB for 100k")
    parser.add_argument(
        "--variant", choices=sorted(RESOURCES), default="100k", help="which MicroLens to download (default: 100k)"
    )
    parser.add_argument("--negatives", type=int, default=4, help="unwatched videos sampled per watch (default: 4)")
    parser.add_argument("--no-images", action="store_true", help="skip the cover images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the negative sampling")


def main(args) -> int:
    if args.download:
        resources = RESOURCES[args.variant] if not args.no_images else RESOURCES[args.variant][:2]
        download_all(resources, args.raw)
    convert(args.raw, args.out, negatives=args.negatives, images=not args.no_images, seed=args.seed, force=args.force)
    return 0
