"""benchmarks/gpu_check.py: the dry run (CPU, tiny) writes its results file with every part; a failing or
overrunning part is recorded and the others still run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_part_over_its_budget_is_killed_with_its_children(tmp_path: Path) -> None:
    module = load()
    marker = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    start = time.perf_counter()
    rc, seconds, _ = module.run_child([sys.executable, "-c", code], timeout=3, log=tmp_path / "log")
    assert rc is None and seconds < 30 and time.perf_counter() - start < 30
    grandchild = int(marker.read_text())
    time.sleep(0.5)
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/gpu_check.py"),
        "--dry-run",
        "--bank-catalogs",
        "1000",
        "100000000000",  # ~50 TB: fits nowhere, so it is skipped and recorded
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [result] = tmp_path.glob("gpu-check-*-cpu.json")
    payload = json.loads(result.read_text())
    assert payload["dry_run"] and payload["all_ok"] and payload["machine"]["device"] == "cpu"
    parts = {p["part"]: p for p in payload["parts"]}
    assert list(parts) == ["demo", "history", "bank", "throughput"]
    for p in parts.values():
        assert p["status"] == "ok" and 0 < p["wall_s"] <= p["budget_s"] and p["commands"]
        assert (REPO / p["results_file"]).exists()  # relative to the repository, or absolute
    demo = parts["demo"]["summary"]
    assert demo["rows_per_s"] > 0 and demo["peak_mib"] > 0 and demo["precision"] == "bf16-mixed"
    assert demo["lemur_over_bare"] > 0
    history = parts["history"]["summary"]
    assert history["ratio_L_over_L0"] > 0 and history["L"] == 16 and history["pairs"] == 2
    bank = parts["bank"]["summary"]
    assert {(r["catalog"], r["dtype"]) for r in bank["rows"]} == {(1000, "float32"), (1000, "bfloat16")}
    assert all(r["read_bank_gbps"] > 0 and r["write_bank_gbps"] > 0 for r in bank["rows"])
    assert sorted((s["catalog"], s["dtype"]) for s in bank["skipped"]) == [
        (100_000_000_000, "bfloat16"),
        (100_000_000_000, "float32"),
    ]
    assert all("host: needs" in s["reason"] for s in bank["skipped"])
    assert {(r["mode"], r["batch_size"]) for r in parts["throughput"]["summary"]["rows"]} == {
        ("train", 16),
        ("inference", 16),
    }
    for name in ("framework-overhead", "history-cost", "bank-ops", "throughput"):  # each part's own results
        assert next(tmp_path.glob(f"{name}-*-cpu.json")).exists()
    assert (tmp_path / "gpu-check-logs" / "demo.log").stat().st_size > 0
    csv_text = result.with_suffix(".csv").read_text()
    assert "rows_per_s" in csv_text and "ratio_L_over_L0" in csv_text and "skipped_1e+11_float32" in csv_text
    assert result.with_suffix(".png").stat().st_size > 1000
    assert payload["command"].startswith("python benchmarks/gpu_check.py --dry-run")


@pytest.mark.slow
def test_a_failing_part_does_not_lose_the_others(tmp_path: Path, monkeypatch) -> None:
    module = load()
    commands = {
        "history": ["history_cost.py", "--lengths", "many"],  # exits with a usage error
        "bank": ["bank_ops.py", "--batch", "8", "--length", "4", "--repeats", "1", "--write-repeats", "1"],
    }
    monkeypatch.setattr(module, "part_commands", lambda args: commands)
    argv = ["gpu_check.py", "--dry-run", "--only", "history", "bank", "--bank-catalogs", "1000", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 1  # not every part ok
    payload = json.loads(next(tmp_path.glob("gpu-check-*-cpu.json")).read_text())
    parts = {p["part"]: p for p in payload["parts"]}
    assert parts["history"]["status"] == "failed" and "invalid int value" in parts["history"]["error"]
    assert parts["bank"]["status"] == "ok" and parts["bank"]["summary"]["rows"]
    assert not payload["all_ok"] and result_files_exist(tmp_path)


def result_files_exist(folder: Path) -> bool:
    return all(next(folder.glob(f"gpu-check-*-cpu{ext}"), None) for ext in (".json", ".csv", ".png"))
