"""benchmarks/input_pipeline.py runs end to end on tiny settings and writes its JSON, CSV and PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_input_pipeline_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/input_pipeline.py"),
        "--preset",
        "tiny",
        "--batch-size",
        "16",
        "--workers",
        "0",
        "1",
        "--batches",
        "2",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--profile",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = tmp_path.glob("input-pipeline-*.json")
    payload = json.loads(result.read_text())
    rows = {r["num_workers"]: r for r in payload["rows"]}
    assert set(rows) == {0, 1}
    for r in rows.values():
        assert (
            r["loader_rows_s"] > 0
            and r["model_rows_s"] > 0
            and r["train_from_loader_rows_s"] > 0
            and r["first_batch_s"] > 0
        )
        assert r["loader_vs_model"] == pytest.approx(r["loader_rows_s"] / r["model_rows_s"], abs=0.01)
        assert r["target_met"] == (r["loader_rows_s"] / r["model_rows_s"] >= 3)
    assert payload["loader_profile"] and all(p["calls"] > 0 for p in payload["loader_profile"])
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
