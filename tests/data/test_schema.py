"""lemur.data.schema: a valid dataset passes; every kind of bad input is a SchemaError that
names the file, the column and, where there is one, the row and the offending value."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import make_tables, write_dataset
from lemur.data.schema import SchemaError, validate_dataset


def _replace(table: pa.Table, name: str, values, type=None) -> pa.Table:
    """``table`` with column ``name`` replaced by ``values`` (keeps the column's position)."""
    i = table.column_names.index(name)
    array = pa.array(values, type=type if type is not None else table.schema.field(name).type)
    return table.set_column(i, name, array)


def _set_value(table: pa.Table, name: str, row: int, value, type=None) -> pa.Table:
    values = table[name].to_pylist()
    values[row] = value
    return _replace(table, name, values, type)


def _fails(tmp_path: Path, docs: pa.Table, events: pa.Table) -> SchemaError:
    root = write_dataset(tmp_path / "bad", docs, events)
    with pytest.raises(SchemaError) as info:
        validate_dataset(root)
    return info.value


def _assert_names(
    err: SchemaError, file: str, column: str | None, row: int | None = None, value: str | None = None
) -> None:
    message = str(err)
    assert file in message, message
    assert Path(err.file).name == file
    if column is not None:
        assert f"'{column}'" in message, message
        assert err.column == column
    if row is not None:
        assert re.search(rf"\brow {row}\b", message), message
        assert err.row == row
    if value is not None:
        assert f"value {value}" in message, message


# ------------------------------------------------------------------------------ valid data
def test_valid_dataset_passes_and_returns_both_tables(handmade_dataset: Path) -> None:
    docs, events = validate_dataset(handmade_dataset)
    ref_docs, ref_events = make_tables()
    assert docs.num_rows == ref_docs.num_rows and events.num_rows == ref_events.num_rows
    assert docs["doc_id"].to_pylist() == ref_docs["doc_id"].to_pylist()
    assert events["label"].to_pylist() == ref_events["label"].to_pylist()


def test_optional_columns_may_be_missing(tmp_path: Path) -> None:
    docs, events = make_tables()
    docs = docs.select(["doc_id", "title"])  # no image, publish_day, other text fields
    events = events.drop_columns(["cat_hour", "dense_position"])
    validate_dataset(write_dataset(tmp_path / "minimal", docs, events))


def test_accepts_other_integer_widths(tmp_path: Path) -> None:
    docs, events = make_tables()
    events = _replace(events, "label", events["label"].to_pylist(), pa.int64())
    events = _replace(events, "day", events["day"].to_pylist(), pa.int64())
    validate_dataset(write_dataset(tmp_path / "widths", docs, events))


# ------------------------------------------------------------------------------ events.parquet
def test_missing_required_column(tmp_path: Path) -> None:
    docs, events = make_tables()
    err = _fails(tmp_path, docs, events.drop_columns(["label"]))
    _assert_names(err, "events.parquet", "label")
    assert "missing" in str(err)


def test_wrong_dtype(tmp_path: Path) -> None:
    docs, events = make_tables()
    events = _replace(events, "label", [str(v) for v in events["label"].to_pylist()], pa.string())
    err = _fails(tmp_path, docs, events)
    _assert_names(err, "events.parquet", "label")
    assert "string" in str(err)


@pytest.mark.parametrize("row", [0, 17, 143])
def test_label_out_of_range_names_row_and_value(tmp_path: Path, row: int) -> None:
    docs, events = make_tables()
    assert row < events.num_rows
    err = _fails(tmp_path, docs, _set_value(events, "label", row, 3))
    _assert_names(err, "events.parquet", "label", row=row, value="3")
    assert err.value == 3


def test_first_bad_row_is_reported(tmp_path: Path) -> None:
    docs, events = make_tables()
    events = _set_value(_set_value(events, "label", 40, 2), "label", 9, -1)
    err = _fails(tmp_path, docs, events)
    _assert_names(err, "events.parquet", "label", row=9, value="-1")


@pytest.mark.parametrize("column", ["user_id", "timestamp", "query", "doc_id"])
def test_null_in_required_column(tmp_path: Path, column: str) -> None:
    docs, events = make_tables()
    err = _fails(tmp_path, docs, _set_value(events, column, 11, None))
    _assert_names(err, "events.parquet", column, row=11)
    assert "null" in str(err)


def test_unknown_doc_id(tmp_path: Path) -> None:
    docs, events = make_tables()
    assert 99 not in docs["doc_id"].to_pylist()
    err = _fails(tmp_path, docs, _set_value(events, "doc_id", 25, 99))
    _assert_names(err, "events.parquet", "doc_id", row=25, value="99")
    assert "docs.parquet" in str(err)


@pytest.mark.parametrize("column", ["timestamp", "day"])
def test_negative_time(tmp_path: Path, column: str) -> None:
    docs, events = make_tables()
    err = _fails(tmp_path, docs, _set_value(events, column, 30, -5))
    _assert_names(err, "events.parquet", column, row=30, value="-5")


def test_negative_categorical(tmp_path: Path) -> None:
    docs, events = make_tables()
    err = _fails(tmp_path, docs, _set_value(events, "cat_hour", 7, -1))
    _assert_names(err, "events.parquet", "cat_hour", row=7, value="-1")


def test_categorical_must_be_integer(tmp_path: Path) -> None:
    docs, events = make_tables()
    events = _replace(events, "cat_hour", [float(v) for v in events["cat_hour"].to_pylist()], pa.float32())
    _assert_names(_fails(tmp_path, docs, events), "events.parquet", "cat_hour")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_dense_not_finite(tmp_path: Path, bad: float) -> None:
    docs, events = make_tables()
    err = _fails(tmp_path, docs, _set_value(events, "dense_position", 12, bad))
    _assert_names(err, "events.parquet", "dense_position", row=12, value=repr(bad))


def test_dense_must_be_numeric(tmp_path: Path) -> None:
    docs, events = make_tables()
    events = events.append_column("dense_name", pa.array(["x"] * events.num_rows))
    _assert_names(_fails(tmp_path, docs, events), "events.parquet", "dense_name")


def test_empty_events(tmp_path: Path) -> None:
    docs, events = make_tables()
    err = _fails(tmp_path, docs, events.slice(0, 0))
    _assert_names(err, "events.parquet", None)
    assert "empty" in str(err)


# ------------------------------------------------------------------------------ docs.parquet
def test_duplicate_doc_id_names_second_occurrence(tmp_path: Path) -> None:
    docs, events = make_tables()
    ids = docs["doc_id"].to_pylist()
    ids[23] = ids[5]
    err = _fails(tmp_path, _replace(docs, "doc_id", ids), events)
    _assert_names(err, "docs.parquet", "doc_id", row=23, value=str(ids[5]))
    assert "duplicate" in str(err)


def test_docs_null_doc_id(tmp_path: Path) -> None:
    docs, events = make_tables()
    err = _fails(tmp_path, _set_value(docs, "doc_id", 3, None), events)
    _assert_names(err, "docs.parquet", "doc_id", row=3)


def test_docs_text_field_wrong_type(tmp_path: Path) -> None:
    docs, events = make_tables()
    docs = _replace(docs, "title", list(range(docs.num_rows)), pa.int64())
    _assert_names(_fails(tmp_path, docs, events), "docs.parquet", "title")


def test_docs_without_content(tmp_path: Path) -> None:
    docs, events = make_tables()
    err = _fails(tmp_path, docs.select(["doc_id", "publish_day"]), events)
    _assert_names(err, "docs.parquet", None)
    assert "content" in str(err)


def test_empty_docs(tmp_path: Path) -> None:
    docs, events = make_tables()
    err = _fails(tmp_path, docs.slice(0, 0), events)
    _assert_names(err, "docs.parquet", None)
    assert "empty" in str(err)


def test_docs_are_checked_before_events(tmp_path: Path) -> None:
    docs, events = make_tables()
    events = _set_value(events, "label", 0, 7)
    ids = docs["doc_id"].to_pylist()
    ids[1] = ids[0]
    _assert_names(_fails(tmp_path, _replace(docs, "doc_id", ids), events), "docs.parquet", "doc_id", row=1)


# ------------------------------------------------------------------------------ files and folders
def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="folder not found") as info:
        validate_dataset(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


@pytest.mark.parametrize("missing", ["docs.parquet", "events.parquet"])
def test_missing_file(tmp_path: Path, missing: str) -> None:
    root = write_dataset(tmp_path / "ds", *make_tables())
    (root / missing).unlink()
    with pytest.raises(SchemaError, match="not found") as info:
        validate_dataset(root)
    assert Path(info.value.file).name == missing
    assert missing in str(info.value)


@pytest.mark.parametrize("broken", ["docs.parquet", "events.parquet"])
@pytest.mark.parametrize("content", [b"doc_id,title\n1,hello\n", b"", b"PAR1" + bytes(64)])
def test_not_parquet(tmp_path: Path, broken: str, content: bytes) -> None:
    root = write_dataset(tmp_path / "ds", *make_tables())
    (root / broken).write_bytes(content)
    with pytest.raises(SchemaError, match="Parquet") as info:
        validate_dataset(root)
    assert broken in str(info.value)


def test_error_is_a_value_error_with_fields() -> None:
    err = SchemaError("events.parquet", "label", "labels must be 0 or 1", row=4, value=np.int64(3).item())
    assert isinstance(err, ValueError)
    assert str(err) == "events.parquet: column 'label', row 4, value 3: labels must be 0 or 1"
    long = SchemaError("docs.parquet", "title", "too long", row=0, value="x" * 500)
    assert len(str(long)) < 200 and "..." in str(long)


# ------------------------------------------------------------------------------ known gaps (bugs in lemur/)
def test_duplicate_doc_id_reports_first_duplicate_in_file_order(tmp_path: Path) -> None:
    docs, events = make_tables()
    ids = docs["doc_id"].to_pylist()
    small, large = sorted(ids)[0], sorted(ids)[-1]
    ids[0], ids[1], ids[2], ids[3] = large, small, large, small  # rows 2 and 3 are duplicates; row 2 comes first
    err = _fails(tmp_path, _replace(docs, "doc_id", ids), events)
    _assert_names(err, "docs.parquet", "doc_id", row=2, value=str(large))


def test_session_with_two_timestamps_is_rejected(tmp_path: Path) -> None:
    docs, events = make_tables()
    session = events["session_id"].to_pylist()
    row = next(i for i in range(1, len(session)) if session[i] == session[i - 1])
    err = _fails(tmp_path, docs, _set_value(events, "timestamp", row, events["timestamp"][row].as_py() + 1))
    _assert_names(err, "events.parquet", "timestamp", row=row)
    assert "session" in str(err)


def test_session_with_two_users_is_rejected(tmp_path: Path) -> None:
    docs, events = make_tables()
    session = events["session_id"].to_pylist()
    row = next(i for i in range(1, len(session)) if session[i] == session[i - 1])
    err = _fails(tmp_path, docs, _set_value(events, "user_id", row, 999_999))
    _assert_names(err, "events.parquet", "user_id", row=row)
    assert "session" in str(err)
