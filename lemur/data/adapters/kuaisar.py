"""KuaiSAR (Kuaishou unified search + recommendation logs) -> lemur's schema.

Raw files (https://zenodo.org/record/8031220, ``KuaiSAR.zip``; comma-separated with a header):

``src_inter.csv``      ``user_id, search_session_id, search_session_time, search_session_timestamp (ms),
                       keyword ("[20, 34, 3]": anonymised word IDs), search_source, item_id, click_cnt,
                       item_type`` -- one row per item shown for a query
``rec_inter.csv``      ``user_id, item_id, playing_time, duration_ms, time, timestamp (ms), click, forward,
                       like, follow, search, search_item_related`` -- one row per recommended item
``item_features.csv``  ``item_id, caption ("[1, 213, 24]"), author_id, item_type, upload_time, upload_type,
                       {first,second,third,fourth}_level_category_{id,name,name_en}``
``user_features.csv``  ``user_id, search_active_level, rec_active_level, onehot_feat1, onehot_feat2``

Mapping: **search rows** are the paper's setting: session = ``search_session_id`` (of one user),
query = the keyword's word IDs as text ("20 34 3"), label = ``click_cnt > 0``, timestamp = the
session's time. **Recommendation rows**: label = ``click``, sessions = a user's rows within one
30-minute clock window, query = "" (no query was issued; SQDC learns little from these rows, so
``services=("search",)`` keeps search alone). Documents = items: ``title`` = the caption's word IDs
as text, ``cover_text`` = the English category names (levels 1-4, "empty" dropped), or the search
log's ``item_type`` for items without features (live streams, user profiles, ...; counted).
Context: ``cat_service`` (1 rec, 2 search), ``cat_search_source`` and the user features as
``cat_*`` (value + 1; 0 = unknown). Days are Beijing-time calendar days.

The captions and keywords are anonymised word IDs, not words: the default WordPiece tokenizer cuts
each number into digit pieces. That works, but a word-level tokenizer over the IDs
(``data.init_args.tokenizer.path``) is the better fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lemur.data.adapters._common import RawFiles, add_common_arguments, download_all, open_binary
from lemur.data.convert import codes, day_index, prepare_output, window_sessions, write_dataset
from lemur.data.download import Resource
from lemur.data.schema import SchemaError

BEIJING = 8 * 3600
RESOURCES = (
    Resource(
        "https://zenodo.org/records/8031220/files/KuaiSAR.zip?download=1",
        "KuaiSAR.zip",
        size="several GB",
        mirrors=("https://zenodo.org/record/8031220/files/KuaiSAR.zip",),
    ),
)
SRC_COLUMNS = (
    "user_id",
    "search_session_id",
    "search_session_timestamp",
    "keyword",
    "search_source",
    "item_id",
    "click_cnt",
    "item_type",
)
REC_COLUMNS = ("user_id", "item_id", "timestamp", "click")
USER_FEATURES = ("search_active_level", "rec_active_level", "onehot_feat1", "onehot_feat2")
CATEGORY_LEVELS = ("first", "second", "third", "fourth")
EMPTY_NAMES = {"", "empty", "unknown", "none", "null", "空"}
REC_SESSION_SECONDS = 1800


def _read_csv(
    location: str, columns: tuple[str, ...], strings: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> pa.Table:
    """The ``columns`` (required) and ``optional`` columns present of a CSV file with a header."""
    with open_binary(location) as stream:
        try:
            table = pacsv.read_csv(
                stream, convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in strings})
            )
        except pa.ArrowInvalid as err:
            raise SchemaError(location, None, f"not a readable CSV file ({err})") from err
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SchemaError(location, missing[0], f"column missing (columns present: {table.column_names})")
    return table.select(list(columns) + [c for c in optional if c in table.column_names])


def _int_column(location: str, table: pa.Table, name: str) -> np.ndarray:
    col = table[name]
    if col.null_count:
        row = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0])
        raise SchemaError(location, name, "missing value", row=row)
    try:
        return pc.cast(col, pa.float64()).to_numpy().astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise SchemaError(location, name, f"not numeric ({err})") from err


def id_text(values: pa.ChunkedArray) -> list[str]:
    """'[20, 34, 3]' -> '20 34 3' (an empty or missing list -> '')."""
    text = pc.fill_null(pc.cast(values, pa.string()), "")
    text = pc.replace_substring_regex(text, r"[\[\]\"',]", " ")
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s+", " "))
    return text.to_pylist()


def convert(
    raw: str | Path, out: str | Path, *, services: tuple[str, ...] = ("search", "rec"), force: bool = False, log=print
) -> dict:
    if not services or set(services) - {"search", "rec"}:
        raise ValueError(f"services must be a non-empty subset of ('search', 'rec'), got {services}")
    files = RawFiles(raw)
    hint = "pass --download, or put KuaiSAR.zip (or its extracted files) there"
    src_loc = files.require("src_inter.csv", hint)[0] if "search" in services else None
    rec_loc = files.require("rec_inter.csv", hint)[0] if "rec" in services else None
    item_loc = (files.find("item_features.csv") or [None])[0]
    user_loc = (files.find("user_features.csv") or [None])[0]
    out = prepare_output(out, force)
    parts = []
    item_type_of: dict[int, str] = {}
    if src_loc:
        src = _read_csv(src_loc, SRC_COLUMNS, strings=("keyword", "search_source", "item_type"))
        log(f"reading {src_loc}: {src.num_rows:,} search rows")
        user = _int_column(src_loc, src, "user_id")
        sid = _int_column(src_loc, src, "search_session_id")
        ms = _int_column(src_loc, src, "search_session_timestamp")
        key = np.stack([user, sid], 1)
        uniq, inverse = np.unique(key, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        start = np.full(len(uniq), np.iinfo(np.int64).max)
        np.minimum.at(start, inverse, ms)
        disagree = int((ms != start[inverse]).sum())
        item = _int_column(src_loc, src, "item_id")
        item_type_of = dict(zip(item.tolist(), pc.fill_null(src["item_type"], "").to_pylist()))
        parts.append(
            {
                "service": np.full(src.num_rows, 2),
                "user": user,
                "item": item,
                "ms": start[inverse],
                "group": inverse,
                "label": (_int_column(src_loc, src, "click_cnt") > 0).astype(np.int8),
                "query": np.asarray(id_text(src["keyword"]), dtype=object),
                "source": np.asarray(pc.fill_null(src["search_source"], "").to_pylist(), dtype=object),
            }
        )
        if disagree:
            log(f"  {disagree:,} search rows had a time other than their session's: they take the session's first time")
    if rec_loc:
        rec = _read_csv(rec_loc, REC_COLUMNS)
        log(f"reading {rec_loc}: {rec.num_rows:,} recommendation rows")
        user = _int_column(rec_loc, rec, "user_id")
        ms = _int_column(rec_loc, rec, "timestamp")
        group, start_s = window_sessions(user, ms // 1000, REC_SESSION_SECONDS, tz_offset=BEIJING)
        first_ms = np.full(int(group.max()) + 1, np.iinfo(np.int64).max)
        np.minimum.at(first_ms, group, ms)
        parts.append(
            {
                "service": np.full(rec.num_rows, 1),
                "user": user,
                "item": _int_column(rec_loc, rec, "item_id"),
                "ms": first_ms[group],
                "group": group,
                "label": (_int_column(rec_loc, rec, "click") > 0).astype(np.int8),
                "query": np.full(rec.num_rows, "", dtype=object),
                "source": np.full(rec.num_rows, "", dtype=object),
            }
        )
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # sessions: (service, group) pairs numbered by (time, service, group)
    skey = rows["service"].astype(np.int64) * (int(rows["group"].max()) + 1) + rows["group"]
    sessions, s_inv = np.unique(skey, return_inverse=True)
    s_time = np.zeros(len(sessions), np.int64)
    s_time[s_inv] = rows["ms"]
    rank = np.empty(len(sessions), np.int64)
    rank[np.lexsort((sessions, s_time))] = np.arange(len(sessions))
    session = rank[s_inv]

    # ---- documents
    doc_ids = np.unique(rows["item"])
    caption: dict[int, str] = {}
    category: dict[int, str] = {}
    if item_loc:
        name_cols = tuple(f"{lvl}_level_category_name_en" for lvl in CATEGORY_LEVELS)
        items = _read_csv(item_loc, ("item_id", "caption"), strings=("caption", *name_cols), optional=name_cols)
        log(f"reading {item_loc}: {items.num_rows:,} items")
        ids = _int_column(item_loc, items, "item_id").tolist()
        caption = dict(zip(ids, id_text(items["caption"])))
        present = [c for c in name_cols if c in items.column_names]
        cols = [pc.fill_null(items[c], "").to_pylist() for c in present]
        for i, values in zip(ids, zip(*cols) if cols else ()):
            kept = [v.strip() for v in values if v.strip().lower() not in EMPTY_NAMES]
            category[i] = " ".join(dict.fromkeys(kept))
    else:
        log("  item_features.csv not found: documents get no caption or category")
    without_features = [int(d) for d in doc_ids if int(d) not in caption]
    docs = pa.table(
        {
            "doc_id": pa.array(doc_ids, pa.int64()),
            "title": pa.array([caption.get(int(d)) or None for d in doc_ids], pa.string()),
            "cover_text": pa.array(
                [
                    (category.get(int(d)) or None)
                    if int(d) in caption
                    else (item_type_of.get(int(d), "").lower() or None)
                    for d in doc_ids
                ],
                pa.string(),
            ),
        }
    )

    # ---- context features
    cats = {"cat_service": rows["service"].astype(np.int64)}
    cats["cat_search_source"], sources = codes(rows["source"])
    if user_loc:
        users = _read_csv(user_loc, ("user_id", *USER_FEATURES))
        uid = _int_column(user_loc, users, "user_id")
        sorter = np.argsort(uid)
        at = np.minimum(np.searchsorted(uid, rows["user"], sorter=sorter), len(uid) - 1)
        known = uid[sorter[at]] == rows["user"]
        for name in USER_FEATURES:
            values = pc.fill_null(users[name], -1)
            v = _int_column(user_loc, users.set_column(users.schema.get_field_index(name), name, values), name)
            cats[f"cat_{name}"] = np.where(known & (v[sorter[at]] >= 0), v[sorter[at]] + 1, 0)
    seconds = rows["ms"] // 1000
    events = pa.table(
        {
            "timestamp": pa.array(rows["ms"], pa.int64()),
            "day": pa.array(day_index(seconds, BEIJING), pa.int32()),
            "user_id": pa.array(rows["user"], pa.int64()),
            "session_id": pa.array(session, pa.int64()),
            "query": pa.array(rows["query"].tolist(), pa.string()),
            "doc_id": pa.array(rows["item"], pa.int64()),
            "label": pa.array(rows["label"], pa.int8()),
            **{k: pa.array(v, pa.int64()) for k, v in cats.items()},
        }
    )
    summary = {
        "dataset": "KuaiSAR",
        "raw": [x for x in (src_loc, rec_loc, item_loc, user_loc) if x],
        "services": list(services),
        "search_rows": int((rows["service"] == 2).sum()),
        "rec_rows": int((rows["service"] == 1).sum()),
        "items_without_features": len(without_features),
        "search_sources": sources,
        "user_features": bool(user_loc),
    }
    if without_features:
        log(f"  {len(without_features):,} items have no row in item_features.csv (no caption; category = item type)")
    return write_dataset(out, docs, events, summary, "kuaisar", log=log)


COMMAND = "kuaisar"
HELP = "KuaiSAR: Kuaishou search sessions (queries) + recommendation feed, captions and categories"


def add_arguments(parser) -> None:
    add_common_arguments(parser, "KuaiSAR.zip from zenodo")
    parser.add_argument(
        "--services", default="search,rec", help="which logs to convert: search, rec or search,rec (default)"
    )


def main(args) -> int:
    if args.download:
        download_all(RESOURCES, args.raw)
    convert(
        args.raw, args.out, services=tuple(s.strip() for s in args.services.split(",") if s.strip()), force=args.force
    )
    return 0
