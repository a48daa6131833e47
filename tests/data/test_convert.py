"""lemur.data.convert: sessions from clock windows, the trigger lookup, negatives, codes, the output folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lemur.data.convert import codes, day_index, last_positive_before, prepare_output, sample_negatives, window_sessions


def test_window_sessions_group_by_user_and_window() -> None:
    user = np.array([1, 1, 2, 1, 2])
    seconds = np.array([100, 3_500, 200, 3_700, 7_300])
    session, start = window_sessions(user, seconds, 3_600)
    assert session.tolist() == [0, 0, 1, 2, 3]  # numbered by start time; user 1's 3,700 opens a new hour
    assert start.tolist() == [100, 100, 200, 3_700, 7_300]
    # a local-time offset moves the window borders
    session, _ = window_sessions(np.array([1, 1]), np.array([3_500, 3_700]), 3_600)
    assert session[0] != session[1]  # 3,500 and 3,700 straddle the hour in UTC
    session, _ = window_sessions(np.array([1, 1]), np.array([3_500, 3_700]), 3_600, tz_offset=200)
    assert session[0] == session[1]  # ... but not 200 s east of it
    with pytest.raises(ValueError, match="divisor of 86400"):
        window_sessions(user, seconds, 7_000)


def test_last_positive_before_is_strict_and_per_user() -> None:
    user = np.array([1, 1, 1, 2, 1])
    time = np.array([10, 20, 20, 5, 30])
    positive = np.array([True, True, True, True, False])
    got = last_positive_before(user, time, positive, np.array([1, 1, 1, 2, 2, 3]), np.array([10, 20, 25, 5, 6, 100]))
    # nothing strictly before t=10; at t=20 only row 0; at 25 the later of the tied rows 1 and 2; other users apart
    assert got.tolist() == [-1, 0, 2, -1, 3, -1]
    none = last_positive_before(user, time, np.zeros(5, bool), np.array([1]), np.array([99]))
    assert none.tolist() == [-1]


def test_sample_negatives_never_seen_and_within_window() -> None:
    rng = np.random.default_rng(0)
    n = 400
    user = rng.integers(0, 20, n)
    item = rng.integers(0, 60, n)
    time = np.sort(rng.integers(0, 10_000, n))
    rows, drawn = sample_negatives(user, item, time, per_positive=3, window=500, seed=1)
    seen = set(zip(user.tolist(), item.tolist()))
    assert len(rows) > 2 * n and all((int(user[r]), int(d)) not in seen for r, d in zip(rows, drawn))
    # each drawn item was hit by some row within the window of its positive
    for r, d in zip(rows[:200], drawn[:200]):
        assert np.any((item == d) & (np.abs(time - time[r]) <= 500))
    assert len(set(zip(rows.tolist(), drawn.tolist()))) == len(rows)  # no repeats per positive
    again = sample_negatives(user, item, time, per_positive=3, window=500, seed=1)
    assert np.array_equal(again[0], rows) and np.array_equal(again[1], drawn)


def test_codes_and_days() -> None:
    values, vocab = codes(["b", None, "a", "b", ""])
    assert values.tolist() == [2, 0, 1, 2, 0] and vocab == ["a", "b"]
    values, _ = codes(["x", "M"], known=["M", "F"])
    assert values.tolist() == [0, 1]
    assert day_index(np.array([86_400 * 5 + 10, 86_400 * 7 - 1, 86_400 * 7])).tolist() == [0, 1, 2]


def test_prepare_output_refuses_then_replaces(tmp_path: Path) -> None:
    out = prepare_output(tmp_path / "d", force=False)
    (out / "events.parquet").write_bytes(b"x")
    (out / ".cache").mkdir()
    with pytest.raises(FileExistsError, match="--force"):
        prepare_output(out, force=False)
    prepare_output(out, force=True)
    assert not (out / "events.parquet").exists() and not (out / ".cache").exists()
