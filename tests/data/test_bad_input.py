"""Bad input the schema rejects beyond tests/data/test_schema.py: NaN / float labels, timestamps that go
back across days (a split leak), integer columns stored as floats; and odd-but-valid input it accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import make_tables, write_dataset
from lemur.data.schema import SchemaError, validate_dataset


def _replace(table: pa.Table, name: str, values, type) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, pa.array(values, type))


def _error(tmp_path: Path, docs: pa.Table, events: pa.Table) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        validate_dataset(write_dataset(tmp_path / "bad", docs, events))
    return info.value


def test_nan_label_names_its_row(tmp_path: Path) -> None:
    docs, events = make_tables()
    labels = events["label"].to_numpy().astype(np.float64)
    labels[19] = np.nan
    err = _error(tmp_path, docs, _replace(events, "label", labels, pa.float64()))
    assert (Path(err.file).name, err.column, err.row) == ("events.parquet", "label", 19)
    assert "value nan" in str(err) and "integer values" in str(err)


def test_whole_number_floats_in_an_integer_column_ask_for_a_cast(tmp_path: Path) -> None:
    docs, events = make_tables()
    err = _error(
        tmp_path, docs, _replace(events, "user_id", events["user_id"].to_numpy().astype(np.float64), pa.float64())
    )
    assert err.column == "user_id" and "cast the column to int64" in str(err)
    err = _error(tmp_path, docs, _replace(events, "day", events["day"].to_numpy() + 0.5, pa.float64()))
    assert err.column == "day" and err.row == 0 and err.value == 0.5


def test_timestamps_going_back_across_days_are_rejected(tmp_path: Path) -> None:
    docs, events = make_tables()
    ts, day, session = (events[c].to_numpy().copy() for c in ("timestamp", "day", "session_id"))
    victim = int(np.flatnonzero(day == 3)[0])
    ts[session == session[victim]] = 5  # a day-3 session timestamped on day 0
    err = _error(tmp_path, docs, _replace(events, "timestamp", ts, pa.int64()))
    assert (err.column, err.row, err.value) == ("timestamp", victim, 5)
    assert "earlier than events of an earlier day" in str(err)


def test_file_order_and_equal_boundary_timestamps_are_fine(tmp_path: Path) -> None:
    docs, events = make_tables()
    shuffled = events.take(np.random.default_rng(1).permutation(events.num_rows))
    validate_dataset(write_dataset(tmp_path / "shuffled", docs, shuffled))
    ts, day = events["timestamp"].to_numpy().copy(), events["day"].to_numpy()
    ts[day == 1] = ts[day == 0].max()  # the next day may start at the previous day's last timestamp
    validate_dataset(write_dataset(tmp_path / "boundary", docs, _replace(events, "timestamp", ts, pa.int64())))


def test_empty_and_missing_text_is_valid(tmp_path: Path) -> None:
    docs, events = make_tables()
    docs = _replace(docs, "title", [""] * docs.num_rows, pa.string())
    docs = _replace(docs, "ocr", [None] * docs.num_rows, pa.string())
    events = _replace(events, "query", [""] * events.num_rows, pa.string())
    validate_dataset(write_dataset(tmp_path / "empty", docs.drop_columns(["image"]), events))
