"""benchmarks/sampling_flops.py runs end to end on tiny settings and writes its JSON, CSV and PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sampling_flops_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/sampling_flops.py"),
        "--preset",
        "tiny",
        "--batch-size",
        "32",
        "--batches",
        "1",
        "--flop-steps",
        "2",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = tmp_path.glob("sampling-flops-*.json")
    payload = json.loads(result.read_text())
    rows = {r["variant"]: r for r in payload["rows"]}
    assert list(rows) == ["none", "p100_q20", "p20_q20", "p10_q10"]
    base = rows["none"]
    for r in rows.values():
        assert r["mflops_per_row"] > 0 and r["step_s"] > 0 and r["flop_steps_counted"] == 2
        assert r["mflops_per_row_min"] <= r["mflops_per_row"] <= r["mflops_per_row_max"]
        assert r["flops_ratio"] == pytest.approx(r["mflops_per_row"] / base["mflops_per_row"], abs=1e-3)
        assert r["time_ratio"] == pytest.approx(r["step_s"] / base["step_s"], abs=1e-3)
        assert r["paper_ratio"] == pytest.approx(r["paper_gflops"] / 4303, abs=1e-3)
    # Counted FLOPs (not timings): fewer encoder rows run forward / backward with sampling.
    assert rows["p100_q20"]["backward_mflops_per_row"] < base["backward_mflops_per_row"]
    assert rows["p20_q20"]["doc_encoder_forward_mflops_per_row"] < base["doc_encoder_forward_mflops_per_row"]
    assert rows["p100_q20"]["forward_mflops_per_row"] == pytest.approx(base["forward_mflops_per_row"])
    assert payload["params"]["doc_encoder"] > 0 and payload["params"]["total"] >= payload["params"]["trainable"]
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
    assert payload["machine"]["torch_threads"] == 1 and payload["command"].startswith(
        "python benchmarks/sampling_flops.py"
    )
