"""benchmarks/throughput.py runs end to end on tiny settings and writes its JSON, CSV and PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_throughput_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/throughput.py"),
        "--preset",
        "tiny",
        "--batch-sizes",
        "16",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = tmp_path.glob("throughput-*.json")
    payload = json.loads(result.read_text())
    rows = {(r["mode"], r["batch_size"]): r for r in payload["rows"]}
    assert set(rows) == {("train", 16), ("inference", 16)} and not payload["errors"]
    for r in rows.values():
        assert (
            r["rows_s"] == pytest.approx(16 / r["step_s"])
            and r["peak_mib"] > 0
            and r["speedup_vs_smallest_batch"] == 1.0
        )
    assert rows[("inference", 16)]["inference_vs_train"] == pytest.approx(
        rows[("inference", 16)]["rows_s"] / rows[("train", 16)]["rows_s"], abs=0.01
    )
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
