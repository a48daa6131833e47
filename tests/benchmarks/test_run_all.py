"""benchmarks/run_all.py runs the chosen scripts with --quick settings and records each one's exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_every_benchmark_script_is_listed() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", REPO / "benchmarks/run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scripts = {p.stem for p in (REPO / "benchmarks").glob("*.py")} - {"common", "run_all"}
    assert set(module.SCRIPTS) | set(module.NOT_RUN) == scripts  # a new script is run by make bench, or says why not
    assert not set(module.SCRIPTS) & set(module.NOT_RUN)
    assert all(set(v) == {"default", "quick"} for v in module.SCRIPTS.values())


@pytest.mark.slow
def test_run_all_quick(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/run_all.py"),
        "--quick",
        "--only",
        "bank_ops",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(next(tmp_path.glob("run-all-*.json")).read_text())
    [run] = summary["runs"]
    assert (
        run["script"] == "bank_ops" and run["returncode"] == 0 and run["wall_s"] > 0 and "--threads 1" in run["command"]
    )
    assert summary["quick"] and next(tmp_path.glob("bank-ops-*.json")).exists()
