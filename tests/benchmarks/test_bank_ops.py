"""benchmarks/bank_ops.py runs end to end on tiny settings and writes its JSON, CSV and PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bank_ops_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/bank_ops.py"),
        "--catalogs",
        "1000",
        "5000",
        "100000000000",
        "--batch",
        "64",
        "--length",
        "20",
        "--repeats",
        "2",
        "--write-repeats",
        "3",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = tmp_path.glob("bank-ops-*.json")
    payload = json.loads(result.read_text())
    assert {(r["catalog"], r["dtype"]) for r in payload["rows"]} == {
        (c, d) for c in (1000, 5000) for d in ("float32", "bfloat16")
    }
    for r in payload["rows"]:
        item = 4 if r["dtype"] == "float32" else 2
        for op in ("read", "read_count", "write"):
            assert r[f"{op}_bank_gbps"] > 0
        assert r["read_bank_gbps"] == pytest.approx(64 * 20 * 128 * item / r["read_bank_s"] / 1e9)
        assert r["read_ratio"] == pytest.approx(r["read_bank_gbps"] / r["read_plain_gbps"], abs=1e-3)
        assert r["write_ratio"] == pytest.approx(r["write_bank_gbps"] / r["write_plain_gbps"], abs=1e-3)
        assert 0 < r["write_distinct"] < 64  # the written rows hold duplicates
    assert payload["bytes_per_entry"] == {"float32": 128 * 4 + 17, "bfloat16": 128 * 2 + 17}
    by_memory = payload["largest_catalog_bank_only"]["80 GiB (H100)"]
    assert by_memory["float32"] == 80 * 2**30 // (128 * 4 + 17) and by_memory["bfloat16"] > by_memory["float32"]
    assert payload["targets"]["met"] == (min(r["read_ratio"] for r in payload["rows"]) >= 0.7)
    # 1e11 entries (~50 TB) fit nowhere: skipped in both dtypes, with the reason
    assert sorted((s["catalog"], s["dtype"]) for s in payload["skipped"]) == [
        (100_000_000_000, "bfloat16"),
        (100_000_000_000, "float32"),
    ]
    assert all("GiB available" in s["reason"] for s in payload["skipped"])
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
