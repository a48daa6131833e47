"""The on-disk schema of a lemur dataset and its validator.

A dataset is a folder with two Parquet tables:

``docs.parquet`` -- one row per document
    ==============  ==========  =====================================================
    column          type        meaning
    ==============  ==========  =====================================================
    doc_id          int64       unique document ID
    title, ocr,     string      text fields (any subset; the recipe names which are
    asr, cover_text             used). Null is read as an empty field.
    image           binary      encoded image bytes (PNG/JPEG/...), optional column;
                                null = this document has no image
    image_path      string      alternative to ``image``: a path relative to the
                                dataset folder, optional column
    publish_day     int32       first day the document can be shown, optional
    ==============  ==========  =====================================================

``events.parquet`` -- one row per (user, query session, shown document)
    ==============  ==========  =====================================================
    timestamp       int64       event time (any monotone unit, e.g. seconds). All
                                rows of one session share it; never earlier than
                                an event of an earlier day (any row order).
    day             int32       day index used for the time-ordered split
    user_id         int64       user ID
    session_id      int64       query session ID: the rows a user saw for one query
                                (QAUC groups by it; SQDC masks rows sharing it)
    query           string      query text (empty string when there is no query)
    doc_id          int64       the document shown; must exist in docs.parquet
    label           int8        1 = click (positive), 0 = no click
    cat_*           int64       optional categorical context features (>= 0)
    dense_*         float32     optional dense context features (finite)
    ==============  ==========  =====================================================

User histories are *not* stored: the DataModule derives them from events strictly
before each row's timestamp (see :mod:`lemur.data.history`).

Every problem is reported as a :class:`SchemaError` naming the file, the column, the
row and the offending value, before any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DOCS_FILE = "docs.parquet"
EVENTS_FILE = "events.parquet"
TEXT_FIELDS = ("title", "ocr", "asr", "cover_text")
CAT_PREFIX = "cat_"
DENSE_PREFIX = "dense_"


class SchemaError(ValueError):
    """Bad input data. The message names the file, column, row and value."""

    def __init__(self, file: str | Path, column: str | None, message: str, row: int | None = None, value=None):
        self.file, self.column, self.row, self.value = str(file), column, row, value
        where = f"{file}"
        if column is not None:
            where += f": column '{column}'"
        if row is not None:
            where += f", row {row}"
        if value is not None:
            shown = repr(value)
            where += f", value {shown if len(shown) <= 80 else shown[:77] + '...'}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Column:
    """A required or optional column and the Arrow types accepted for it."""

    name: str
    kind: str  # "int", "float", "string", "binary"
    required: bool = True


DOCS_COLUMNS = (
    Column("doc_id", "int"),
    Column("publish_day", "int", required=False),
    Column("image", "binary", required=False),
    Column("image_path", "string", required=False),
) + tuple(Column(f, "string", required=False) for f in TEXT_FIELDS)

EVENTS_COLUMNS = (
    Column("timestamp", "int"),
    Column("day", "int"),
    Column("user_id", "int"),
    Column("session_id", "int"),
    Column("query", "string"),
    Column("doc_id", "int"),
    Column("label", "int"),
)

_KIND_CHECK = {
    "int": pa.types.is_integer,
    "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "binary": lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t),
}


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_columns(table: pa.Table, file: Path, columns: tuple[Column, ...]) -> None:
    names = set(table.column_names)
    for col in columns:
        if col.name not in names:
            if col.required:
                raise SchemaError(file, col.name, f"required column is missing (columns present: {sorted(names)})")
            continue
        dtype = table.schema.field(col.name).type
        if col.kind == "int" and pa.types.is_floating(dtype):
            _reject_float_ints(table, file, col.name, dtype)
        if not _KIND_CHECK[col.kind](dtype):
            raise SchemaError(file, col.name, f"expected {col.kind} type, got {dtype}")
        if col.required and table[col.name].null_count:
            row = _first_row(pc.is_null(table[col.name]).to_numpy(zero_copy_only=False))
            raise SchemaError(file, col.name, "null value in a required column", row=row, value=None)


def _reject_float_ints(table: pa.Table, file: Path, name: str, dtype) -> None:
    """An integer column stored as floats: name the first NaN / non-integer value, else ask for a cast."""
    values = table[name].to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = _first_row(bad)
        raise SchemaError(
            file, name, f"expected integer values (column type {dtype})", row=row, value=float(values[row])
        )
    raise SchemaError(
        file, name, f"expected int type, got {dtype} (the values are whole numbers: cast the column to int64)"
    )


def _check_features(table: pa.Table, file: Path) -> None:
    for name in table.column_names:
        dtype = table.schema.field(name).type
        if name.startswith(CAT_PREFIX):
            if not pa.types.is_integer(dtype):
                raise SchemaError(file, name, f"categorical feature must be an integer type, got {dtype}")
            values = table[name].to_numpy(zero_copy_only=False)
            bad = pc.is_null(table[name]).to_numpy(zero_copy_only=False)
            if bad.any():
                raise SchemaError(file, name, "null categorical value", row=_first_row(bad))
            if (values < 0).any():
                row = _first_row(values < 0)
                raise SchemaError(file, name, "categorical values must be >= 0", row=row, value=int(values[row]))
        elif name.startswith(DENSE_PREFIX):
            if not (pa.types.is_floating(dtype) or pa.types.is_integer(dtype)):
                raise SchemaError(file, name, f"dense feature must be numeric, got {dtype}")
            values = table[name].to_numpy(zero_copy_only=False).astype(np.float64)
            bad = ~np.isfinite(values)
            if bad.any():
                row = _first_row(bad)
                raise SchemaError(file, name, "dense feature must be finite", row=row, value=float(values[row]))


def read_table(path: Path) -> pa.Table:
    """Read a Parquet file, turning a missing or unreadable file into a SchemaError."""
    if not path.exists():
        raise SchemaError(path, None, "file not found (a dataset folder holds docs.parquet and events.parquet)")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(path, None, f"not a readable Parquet file ({err})") from err


def validate_docs(table: pa.Table, file: Path | str = DOCS_FILE) -> None:
    """Check the docs table; raise SchemaError at the first problem."""
    file = Path(file)
    _check_columns(table, file, DOCS_COLUMNS)
    ids = table["doc_id"].to_numpy()
    if len(ids) == 0:
        raise SchemaError(file, None, "the docs table is empty")
    order = np.argsort(ids, kind="stable")
    dup = ids[order][1:] == ids[order][:-1]
    if dup.any():
        row = int(order[1:][dup].min())  # the first repeated occurrence in file order
        raise SchemaError(
            file, "doc_id", "duplicate doc_id (each document must appear once)", row=row, value=int(ids[row])
        )
    if not any(f in table.column_names for f in TEXT_FIELDS) and "image" not in table.column_names:
        raise SchemaError(file, None, f"no content columns: need at least one of {list(TEXT_FIELDS)} or 'image'")


def validate_events(table: pa.Table, doc_ids: np.ndarray, file: Path | str = EVENTS_FILE) -> None:
    """Check the events table against the known document IDs; raise SchemaError at the first problem."""
    file = Path(file)
    _check_columns(table, file, EVENTS_COLUMNS)
    if table.num_rows == 0:
        raise SchemaError(file, None, "the events table is empty")
    label = table["label"].to_numpy()
    bad = (label != 0) & (label != 1)
    if bad.any():
        row = _first_row(bad)
        raise SchemaError(file, "label", "labels must be 0 or 1", row=row, value=int(label[row]))
    for col in ("timestamp", "day"):
        values = table[col].to_numpy()
        if (values < 0).any():
            row = _first_row(values < 0)
            raise SchemaError(file, col, "must be >= 0", row=row, value=int(values[row]))
    events_doc = table["doc_id"].to_numpy()
    known = np.isin(events_doc, doc_ids)
    if not known.all():
        row = _first_row(~known)
        raise SchemaError(file, "doc_id", "doc_id not found in docs.parquet", row=row, value=int(events_doc[row]))
    _check_sessions(table, file)
    _check_time_order(table, file)
    _check_features(table, file)


def _check_time_order(table: pa.Table, file: Path) -> None:
    """Timestamps must not decrease from one day to the next: histories are taken by timestamp and
    splits by day, so an event dated on a later day but timestamped before an earlier day's events
    would leak across the split (a training row could see a test-day click)."""
    day, ts = table["day"].to_numpy(), table["timestamp"].to_numpy()
    days, inverse = np.unique(day, return_inverse=True)
    if len(days) < 2:
        return
    day_max = np.full(len(days), np.iinfo(np.int64).min, np.int64)
    np.maximum.at(day_max, inverse, ts.astype(np.int64))
    # max timestamp of earlier days
    before = np.concatenate([[np.iinfo(np.int64).min], np.maximum.accumulate(day_max)[:-1]])
    bad = ts < before[inverse]
    if bad.any():
        row = _first_row(bad)
        raise SchemaError(
            file,
            "timestamp",
            f"earlier than events of an earlier day (row's day {int(day[row])}; earlier days "
            f"reach timestamp {int(before[inverse[row]])}): timestamps must not decrease as days increase",
            row=row,
            value=int(ts[row]),
        )


def _check_sessions(table: pa.Table, file: Path) -> None:
    """All rows of a session belong to one user and share one timestamp (histories rely on
    it to exclude the session's own clicks; QAUC and SQDC group by session)."""
    sid = table["session_id"].to_numpy()
    order = np.argsort(sid, kind="stable")
    same = sid[order][1:] == sid[order][:-1]
    for col in ("user_id", "timestamp"):
        values = table[col].to_numpy()[order]
        bad = same & (values[1:] != values[:-1])
        if bad.any():
            row = int(order[1:][bad].min())
            raise SchemaError(
                file,
                col,
                f"rows of session {int(sid[row])} must share one {col}",
                row=row,
                value=int(table[col][row].as_py()),
            )


def validate_dataset(root: str | Path) -> tuple[pa.Table, pa.Table]:
    """Read and validate ``root/docs.parquet`` and ``root/events.parquet``; return both tables."""
    root = Path(root)
    if not root.is_dir():
        raise SchemaError(
            root, None, "dataset folder not found (create one with `lemur data synth --preset tiny --out DIR`)"
        )
    docs = read_table(root / DOCS_FILE)
    validate_docs(docs, root / DOCS_FILE)
    events = read_table(root / EVENTS_FILE)
    validate_events(events, docs["doc_id"].to_numpy(), root / EVENTS_FILE)
    return docs, events
