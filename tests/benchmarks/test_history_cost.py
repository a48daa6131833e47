"""benchmarks/history_cost.py runs end to end on tiny settings and writes its JSON, CSV and PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_history_cost_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/history_cost.py"),
        "--preset",
        "tiny",
        "--lengths",
        "0",
        "16",
        "--batch-size",
        "16",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--paired-steps",
        "2",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = tmp_path.glob("history-cost-*.json")
    payload = json.loads(result.read_text())
    rows = {(r["variant"], r["L"]): r for r in payload["rows"]}
    assert set(rows) == {(v, L) for v in ("bank", "naive", "two_stage") for L in (0, 16)}
    assert all(r["step_s"] > 0 and r["peak_mib"] > 0 for r in rows.values())
    assert rows[("bank", 16)]["ratio_vs_L0"] > 0 and "ratio_vs_bank" in rows[("naive", 16)]
    pairs = {p["variant"]: p for p in payload["paired"]}  # interleaved L=0 / L=16 steps in one process
    assert set(pairs) == {"bank", "two_stage"} and all(
        p["pairs"] == 2 and p["L"] == 16 and p["median_pair_ratio"] > 0 for p in pairs.values()
    )
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
    assert payload["machine"]["torch"] and payload["command"].startswith("python benchmarks/history_cost.py")
