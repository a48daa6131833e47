"""benchmarks/framework_overhead.py: the step clock, and an end-to-end run on tiny settings (JSON, CSV, PNG)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def load():
    spec = importlib.util.spec_from_file_location("framework_overhead", REPO / "benchmarks/framework_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_clock_times_between_starts_and_leaves_out_marked_steps(monkeypatch) -> None:
    module = load()
    clock = module.StepClock("cpu", warmup=1, steps=3)
    now = iter([0.0, 1.0, 1.5, 3.5, 4.0, 10.0])
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(now))
    batch = {"doc_index": np.arange(20), "label": np.zeros(20)}
    for i in range(6):
        clock.tick(batch)
        if i == 2:
            clock.mark("validation")  # validation ran inside step 2 (1.5 -> 3.5)
    # step 0 is warm-up, step 2 is marked, steps 1 and 3 are timed; step 4 is past warmup + steps
    assert clock.timed() == [0.5, 0.5]
    assert clock.marked == {2: "validation"}
    assert clock.first_batches == [list(range(8))] * 3 and clock.rows == 20


@pytest.mark.slow
def test_framework_overhead_quick(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/framework_overhead.py"),
        "--quick",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--profile",
        "always",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [result] = tmp_path.glob("framework-overhead-*-cpu.json")
    payload = json.loads(result.read_text())
    assert payload["preset"] == "tiny" and payload["batch_size"] == 16
    rounds = payload["rounds"]
    assert [r["order"] for r in rounds] == ["lemur/bare", "bare/lemur"]  # the order alternates
    for r in rounds:
        assert r["lemur_steps_timed"] == r["bare_steps_timed"] == 3
        assert r["ratio"] == pytest.approx(r["lemur_median_s"] / r["bare_median_s"])
    assert payload["steps_timed"] == {"lemur": 6, "bare": 6}
    assert payload["ratio"] == pytest.approx(payload["lemur_median_s"] / payload["bare_median_s"], abs=1e-3)
    assert payload["met"] == (payload["ratio"] <= 1.10) and payload["targets"]["met"] == payload["met"]
    assert payload["same_batches"] is True  # both loops trained on the same rows
    lemur = payload["setup"]["lemur"]  # the demo's callbacks and logger really ran
    assert {"MemoryBankCallback", "LemurCheckpoint", "RunSummary"} <= set(lemur["callbacks"])
    assert any("ProgressBar" in c for c in lemur["callbacks"])
    assert lemur["logger"] == "SafeMLFlowLogger" and lemur["mlflow_failure"] is None
    assert lemur["gradient_clip_val"] == payload["setup"]["bare"]["gradient_clip_val"] == 1.0
    profile = payload["profile"]
    assert profile["by_group"] and profile["top_extra_own_time"] and profile["framework_only_cumulative"]
    assert set(profile["profiled_ms_per_step"]) == {"lemur", "bare"}
    assert payload["command"].startswith("python benchmarks/framework_overhead.py --quick")
    assert payload["machine"]["torch_threads"] == 1
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
