"""MIND (Microsoft News Dataset) -> lemur's schema.

Raw files (each split, e.g. ``MINDsmall_train.zip`` / ``MINDsmall_dev.zip``, holds both; tab-separated,
no header, no quoting):

``behaviors.tsv``  ``impression_id  user_id  time  history  impressions``
    e.g. ``1  U13740  11/11/2019 9:05:58 AM  N55189 N42782  N55689-1 N35729-0``: history = the user's
    clicks before the logging window, oldest first, space-separated (may be empty); impressions =
    the news shown, each ``<news_id>-<1 clicked | 0 not>`` (the MIND-large test split has no labels).
``news.tsv``       ``news_id  category  subcategory  title  abstract  url  title_entities  abstract_entities``
    (the abstract may be empty).

Mapping: one impression = one session (QAUC is MIND's per-impression AUC); rows = the shown news,
label = clicked; timestamp = impression time (seconds), day = calendar day of it; documents = news:
``title`` = title, ``ocr`` = abstract (the long body text), ``cover_text`` = "category subcategory".
The query slot holds the *trigger*: the title of the user's latest click before the impression (an
earlier impression's click in the logs, else the last entry of the history column; empty when the
history is empty too). Histories come from the clicks in the logs; ``history_rows=True`` also writes
the history column's clicks as label-1 rows on an extra day 0 (``cat_from_history`` = 2) so that the
DataModule sees them (they are all positives: the model must not learn from them as impressions).
``cat_hour`` = hour of the impression + 1. IDs: ``N123`` -> doc_id 123, ``U45`` -> user_id 45.
Impressions without labels and news missing from news.tsv are counted in the summary.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lemur.data.adapters._common import RawFiles, add_common_arguments, download_all, read_bytes
from lemur.data.convert import day_index, last_positive_before, prepare_output, write_dataset
from lemur.data.download import Resource
from lemur.data.schema import SchemaError

BEHAVIOR_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
NEWS_COLUMNS = ("news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_MIRROR = "https://mind201910small.blob.core.windows.net/release/"
_RECO = "https://recodatasets.z20.web.core.windows.net/newsrec/"
RESOURCES = {
    "small": (
        Resource(
            _RECO + "MINDsmall_train.zip",
            "MINDsmall_train.zip",
            size="52 MB",
            mirrors=(_MIRROR + "MINDsmall_train.zip",),
        ),
        Resource(
            _RECO + "MINDsmall_dev.zip", "MINDsmall_dev.zip", size="30 MB", mirrors=(_MIRROR + "MINDsmall_dev.zip",)
        ),
    ),
    "large": (
        Resource(_MIRROR + "MINDlarge_train.zip", "MINDlarge_train.zip", size="530 MB"),
        Resource(_MIRROR + "MINDlarge_dev.zip", "MINDlarge_dev.zip", size="103 MB"),
    ),
}


def _read_tsv(location: str, columns: tuple[str, ...]) -> pa.Table:
    data = read_bytes(location)
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=list(columns)),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as err:
        raise SchemaError(location, None, f"not a MIND tab-separated file with {len(columns)} columns ({err})") from err


def _ids(location: str, column: str, values: pa.Array, prefix: str) -> np.ndarray:
    """'N123' -> 123; anything else is an error naming the file, column, row and value."""
    values = pc.utf8_trim_whitespace(values)
    ok = pc.fill_null(pc.match_substring_regex(values, f"^{prefix}[0-9]+$"), False).to_numpy(zero_copy_only=False)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise SchemaError(location, column, f"expected an ID like {prefix}123", row=row, value=values[row].as_py())
    return pc.cast(pc.utf8_slice_codeunits(values, 1), pa.int64()).to_numpy()


def _seconds(location: str, times: pa.Array) -> np.ndarray:
    uniq, inverse = np.unique(np.asarray(times.to_pylist(), dtype=object), return_inverse=True)
    out = np.empty(len(uniq), np.int64)
    for i, text in enumerate(uniq):
        try:
            out[i] = int(datetime.strptime(text.strip(), TIME_FORMAT).replace(tzinfo=timezone.utc).timestamp())
        except ValueError:
            row = int(np.flatnonzero(inverse == i)[0])
            raise SchemaError(
                location, "time", "expected a time like 11/11/2019 9:05:58 AM", row=row, value=text
            ) from None
    return out[inverse]


def convert(raw: str | Path, out: str | Path, *, history_rows: bool = False, force: bool = False, log=print) -> dict:
    files = RawFiles(raw)
    hint = "get MINDsmall_train.zip / MINDsmall_dev.zip with --download, or put the extracted folders there"
    behaviors_files = files.require("behaviors.tsv", hint)
    news_files = files.require("news.tsv", hint)
    out = prepare_output(out, force)

    # ---- news (the union over splits; the first occurrence of a news ID wins)
    news_parts = []
    for location in news_files:
        table = _read_tsv(location, NEWS_COLUMNS)
        log(f"reading {location}: {table.num_rows:,} news")
        news_parts.append((location, table))
    news_ids, titles, abstracts, cats = [], [], [], []
    for location, table in news_parts:
        news_ids.append(_ids(location, "news_id", table["news_id"], "N"))
        titles += table["title"].to_pylist()
        abstracts += table["abstract"].to_pylist()
        cats += [
            f"{c} {s.replace('_', ' ')}".strip()
            for c, s in zip(table["category"].to_pylist(), table["subcategory"].to_pylist())
        ]
    news_ids = np.concatenate(news_ids)
    news_ids, first = np.unique(news_ids, return_index=True)
    titles = [titles[i].strip() or None for i in first]
    abstracts = [abstracts[i].strip() or None for i in first]
    cats = [cats[i] or None for i in first]

    # ---- impressions -> rows
    rows = {k: [] for k in ("session", "time", "user", "doc", "label")}
    history_last, history_all, session_base, unlabeled, impressions = [], [], 0, 0, 0
    for location in behaviors_files:
        table = _read_tsv(location, BEHAVIOR_COLUMNS)
        log(f"reading {location}: {table.num_rows:,} impressions")
        user = _ids(location, "user_id", table["user_id"], "U")
        seconds = _seconds(location, table["time"])
        shown = pc.split_pattern(pc.utf8_trim_whitespace(table["impressions"]), " ")
        counts = pc.list_value_length(shown).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(shown)
        parts = pc.split_pattern(flat, "-", max_splits=1)
        has_label = pc.list_value_length(parts).to_numpy(zero_copy_only=False) == 2
        imp_of_row = np.repeat(np.arange(table.num_rows), counts)
        labeled_imp = np.bincount(imp_of_row, weights=~has_label, minlength=table.num_rows) == 0
        unlabeled += int((~labeled_imp).sum())
        keep = labeled_imp[imp_of_row]
        items = pc.list_element(parts, 0).filter(pa.array(keep))
        labels = pc.list_element(parts.filter(pa.array(keep & has_label)), 1).to_numpy(zero_copy_only=False)
        if not np.isin(labels, ["0", "1"]).all():
            bad = labels[~np.isin(labels, ["0", "1"])][0]
            raise SchemaError(location, "impressions", "a shown news must end in -0 or -1", value=bad)
        imp = imp_of_row[keep]
        new_ids = np.cumsum(labeled_imp) - 1 + session_base
        rows["session"].append(new_ids[imp])
        rows["time"].append(seconds[imp])
        rows["user"].append(user[imp])
        rows["doc"].append(_ids(location, "impressions", items, "N"))
        rows["label"].append(labels.astype(np.int8))
        history = pc.split_pattern(pc.utf8_trim_whitespace(table["history"]), " ")
        lasts = [h[-1] if h else "" for h in history.to_pylist()]  # the most recent click before the logs
        history_last.append(np.asarray(lasts, dtype=object)[labeled_imp])
        if history_rows:
            history_all.append((user[labeled_imp], history.filter(pa.array(labeled_imp))))
        session_base += int(labeled_imp.sum())
        impressions += int(labeled_imp.sum())
    if impressions == 0:
        raise SchemaError(
            behaviors_files[0], "impressions", "no labelled impressions (the MIND-large test split has no labels)"
        )
    session = np.concatenate(rows["session"])
    seconds = np.concatenate(rows["time"])
    user = np.concatenate(rows["user"])
    doc = np.concatenate(rows["doc"])
    label = np.concatenate(rows["label"])
    history_last = np.concatenate(history_last)  # per session

    # ---- the trigger query
    title_of = dict(zip(news_ids.tolist(), [t or "" for t in titles]))
    sessions, first_row = np.unique(session, return_index=True)
    trigger = last_positive_before(user, seconds, label == 1, user[first_row], seconds[first_row])
    query_by_session = np.asarray(
        [
            title_of.get(int(doc[t]), "") if t >= 0 else (title_of.get(int(h[1:]), "") if h[1:].isdigit() else "")
            for t, h in zip(trigger.tolist(), history_last.tolist())
        ],
        dtype=object,
    )
    query = query_by_session[np.searchsorted(sessions, session)]
    # number the sessions by time (splits may be read in any order)
    rank = np.empty(len(sessions), np.int64)
    rank[np.lexsort((sessions, seconds[first_row]))] = np.arange(len(sessions))
    session = rank[np.searchsorted(sessions, session)]
    from_history = np.ones(len(label), np.int64)

    # ---- optional: the history column's clicks as positive rows on a day before the logs
    n_history = 0
    if history_rows and history_all:
        h_user, h_doc = [], []
        seen = set()
        for users_, hist in history_all:
            for u, items in zip(users_.tolist(), hist.to_pylist()):
                if u in seen:
                    continue  # the same user's history repeats in every impression
                seen.add(u)
                items = [x for x in items if x[1:].isdigit()]
                h_user += [u] * len(items)
                h_doc += [int(x[1:]) for x in items]
        h_user, h_doc = np.asarray(h_user, np.int64), np.asarray(h_doc, np.int64)
        n_history = len(h_doc)
        if n_history:
            day_start = (seconds.min() // 86_400) * 86_400
            # one session per user on the day before the logs; order inside it is lost (rows share a time)
            users_h, h_session = np.unique(h_user, return_inverse=True)
            session = np.concatenate([session + len(users_h), h_session])
            seconds = np.concatenate([seconds, np.full(n_history, day_start - 86_400 + 1)])
            user = np.concatenate([user, h_user])
            doc = np.concatenate([doc, h_doc])
            label = np.concatenate([label, np.ones(n_history, np.int8)])
            query = np.concatenate([query, np.full(n_history, "", dtype=object)])
            from_history = np.concatenate([from_history, np.full(n_history, 2, np.int64)])

    # ---- documents: news.tsv plus any shown news it lacks
    missing = np.setdiff1d(np.unique(doc), news_ids)
    if len(missing):
        log(f"  {len(missing):,} news shown in behaviors.tsv are missing from news.tsv: kept with empty text")
    doc_ids = np.concatenate([news_ids, missing])
    docs = pa.table(
        {
            "doc_id": pa.array(doc_ids, pa.int64()),
            "title": pa.array(titles + [None] * len(missing), pa.string()),
            "ocr": pa.array(abstracts + [None] * len(missing), pa.string()),
            "cover_text": pa.array(cats + [None] * len(missing), pa.string()),
        }
    )
    events = pa.table(
        {
            "timestamp": pa.array(seconds, pa.int64()),
            "day": pa.array(day_index(seconds), pa.int32()),
            "user_id": pa.array(user, pa.int64()),
            "session_id": pa.array(session, pa.int64()),
            "query": pa.array(query.tolist(), pa.string()),
            "doc_id": pa.array(doc, pa.int64()),
            "label": pa.array(label, pa.int8()),
            "cat_hour": pa.array((seconds // 3600) % 24 + 1, pa.int64()),
            **({"cat_from_history": pa.array(from_history, pa.int64())} if history_rows else {}),
        }
    )
    summary = {
        "dataset": "MIND",
        "raw": [str(f) for f in behaviors_files + news_files],
        "impressions": impressions,
        "unlabeled_impressions_skipped": unlabeled,
        "news_missing_from_news_tsv": int(len(missing)),
        "news_without_abstract": int(sum(a is None for a in abstracts)),
        "sessions_with_empty_history_and_no_earlier_click": int((query_by_session == "").sum()),
        "history_rows": n_history,
    }
    if unlabeled:
        log(f"  {unlabeled:,} impressions without labels skipped (a test split)")
    return write_dataset(out, docs, events, summary, "mind", log=log)


COMMAND = "mind"
HELP = "MIND (Microsoft News): impressions with clicks, news title/abstract/category"


def add_arguments(parser) -> None:
    add_common_arguments(parser, "MINDsmall_train.zip + MINDsmall_dev.zip, ~80 MB; --size large for MIND-large")
    parser.add_argument(
        "--size", choices=sorted(RESOURCES), default="small", help="which MIND to download (default: small)"
    )
    parser.add_argument(
        "--history-rows",
        action="store_true",
        help="also write the behaviors' history column as label-1 rows on a day before the logs",
    )


def main(args) -> int:
    if args.download:
        download_all(RESOURCES[args.size], args.raw)
    convert(args.raw, args.out, history_rows=args.history_rows, force=args.force)
    return 0
