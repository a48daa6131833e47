"""Run every speed and memory benchmark script, one after the other (``make bench``).

Probes and ceilings of what the data contains (``diagnostics/``) are not benchmarks and are not run here.

Each script runs in its own process with short settings (below), so the whole set takes minutes
rather than hours on a CPU (the four newer scripts took ~15 min on the shared, loaded 2-core CPU
of 2026-11-23; history_cost adds an estimated 10-15, framework_overhead ~2, sharded_bank ~1).
``--quick`` shrinks every script to its smallest settings on the ``tiny`` preset: a smoke run (~6 min
there, most of it starting Python + Lightning processes; the numbers mean little). ``--device``,
``--precision``, ``--threads`` and ``--out`` are passed to every script. A failing script does not
stop the others; the exit status is non-zero if any failed. Also writes
``results/run-all-<date>-<device>.json``: per script its command, exit status and wall time.

    python benchmarks/run_all.py                          # make bench
    python benchmarks/run_all.py --quick --only bank_ops throughput
    python benchmarks/run_all.py --device cuda --precision bf16-mixed
    make bench BENCH_ARGS="--quick"
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, machine, write  # noqa: E402

TINY_MODEL = ["--preset", "tiny"]
SCRIPTS: dict[str, dict[str, list[str]]] = {
    "history_cost": {
        "default": ["--lengths", "0", "64", "1000", "--steps", "2", "--warmup", "1"],
        "quick": [*TINY_MODEL, "--lengths", "0", "16", "--batch-size", "16", "--steps", "1", "--warmup", "0"],
    },
    "sampling_flops": {
        "default": [],
        "quick": [
            *TINY_MODEL,
            "--batch-size",
            "32",
            "--batches",
            "1",
            "--flop-steps",
            "1",
            "--steps",
            "1",
            "--warmup",
            "0",
        ],
    },
    "bank_ops": {
        "default": [],
        "quick": ["--catalogs", "10000", "--length", "50", "--repeats", "2", "--write-repeats", "5"],
    },
    "input_pipeline": {
        "default": ["--profile"],
        "quick": [
            *TINY_MODEL,
            "--batch-size",
            "32",
            "--workers",
            "0",
            "1",
            "--batches",
            "3",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--rounds",
            "1",
        ],
    },
    "throughput": {
        "default": [],
        "quick": [*TINY_MODEL, "--batch-sizes", "16", "64", "--steps", "1", "--warmup", "0", "--rounds", "1"],
    },
    "framework_overhead": {
        "default": ["--steps", "10", "--warmup", "3", "--rounds", "2"],
        "quick": ["--quick", "--rounds", "1", "--profile", "never"],
    },
    "sharded_bank": {  # spawns W gloo processes (W = 2, 4); --device cuda needs one GPU per rank
        "default": ["--repeats", "5"],
        "quick": ["--worlds", "2", "--capacity", "10000", "--batch", "16", "--length", "50", "--repeats", "2"],
    },
}
NOT_RUN = {
    "movielens": "a model-quality experiment (trains the MovieLens suite: hours on a CPU), run on its own",
    "gpu_check": "the one-shot GPU check (make gpu-check): runs four of the scripts above itself, with GPU settings",
}
"""Scripts in benchmarks/ that ``make bench`` leaves out, and why."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), help="run only these scripts")
    parser.add_argument("--quick", action="store_true", help="smallest smoke settings on the tiny preset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads of every script (1 is steadier on a shared CPU)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results files")
    args = parser.parse_args()
    runs = []
    for name in args.only or list(SCRIPTS):
        cmd = [
            sys.executable,
            str(REPO / "benchmarks" / f"{name}.py"),
            *SCRIPTS[name]["quick" if args.quick else "default"],
            "--device",
            args.device,
            "--precision",
            args.precision,
            "--out",
            str(args.out),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=REPO).returncode
        runs.append(
            {
                "script": name,
                "returncode": rc,
                "wall_s": round(time.perf_counter() - start, 1),
                "command": "python "
                + " ".join(str(Path(c).relative_to(REPO)) if c.startswith(str(REPO)) else c for c in cmd[1:]),
            }
        )
        print(f"=== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {runs[-1]['wall_s']:.0f} s", flush=True)
    payload = {
        "benchmark": "run_all",
        "machine": machine(args.device),
        "quick": args.quick,
        "runs": runs,
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write("run-all", payload, args.device, args.out)
    failed = [r["script"] for r in runs if r["returncode"]]
    print(f"wrote {path}; " + (f"FAILED: {', '.join(failed)}" if failed else f"all {len(runs)} scripts ok"))
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
