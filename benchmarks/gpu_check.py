"""One-shot GPU check: the numbers a first session on a GPU should bring back, in <= 8 minutes on one H100/H200.

Four parts, each a benchmark script of this folder run in its own process with a time budget; a part that
fails or runs out of its time is recorded (status, exit code, the end of its output) and the next one runs,
so one failing part never loses the others' results:

a. ``demo``: ``recipes/lemur.yaml`` on LEMUR-Synth ``small`` at ``bf16-mixed``, ``lemur fit`` (the real CLI,
   every callback, MLflow) for a fixed number of steps, via ``framework_overhead.py``: rows/s (batch / median
   step), peak GPU memory, and the step-time ratio to a bare PyTorch loop on the same model and batches;
b. ``history``: ``history_cost.py``, bank histories, L = 0 vs L = 1000 (interleaved steps in one process):
   the step-time ratio L=1000 / L=0 (target <= 1.25);
c. ``bank``: ``bank_ops.py`` at 1e7 and 1e8 entries x 128, fp32 and bf16: read / write GB/s vs a plain
   ``index_select`` / ``index_copy_``. Memory is checked first (free GPU memory, and host memory, where the
   bank is built before it moves to the GPU); a size that does not fit is skipped and recorded;
d. ``throughput``: ``throughput.py``, train and inference rows/s of the demo recipe vs batch size.

Writes ``results/gpu-check-<date>-gpu.json`` (machine, per part: status, wall time, budget, command, results
file, headline numbers) after every part, then its ``.csv`` (one row per headline number) and ``.png``; the
parts write their own results files next to it (``framework-overhead-*``, ``history-cost-*``, ``bank-ops-*``,
``throughput-*``); each part's full output goes to ``gpu-check-logs/`` in the same folder. Runs offline
(LEMUR-Synth is generated locally when missing; no downloads: ``HF_HUB_OFFLINE`` etc. are set for the parts).

``--dry-run``: the same parts on the CPU with the ``tiny`` preset and minimal steps, into a temporary folder
(or ``--out``): a smoke run of every code path, about a minute on a 2-core CPU.

    python benchmarks/gpu_check.py                 # make gpu-check   (needs a CUDA device)
    python benchmarks/gpu_check.py --dry-run       # make gpu-check GPU_ARGS=--dry-run
    python benchmarks/gpu_check.py --only demo bank --out /tmp/check
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, device_label, ensure_data, machine, save_figure, write  # noqa: E402

HERE = Path(__file__).resolve().parent
PARTS = ("demo", "history", "bank", "throughput")
BUDGET_S = {"demo": 170, "history": 100, "bank": 100, "throughput": 130}
"""Seconds each part may take on a GPU (a cap: expected well below); the whole run also stops at ``--budget-s``."""
DRY_BUDGET_S = dict.fromkeys(PARTS, 150)
TOTAL_S = 450  # 7.5 min: the 8-minute promise, with room for starting Python and writing the files
BANK_CATALOGS = [10_000_000, 100_000_000]
BANK_DTYPES = ["float32", "bfloat16"]
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
}


def part_commands(args) -> dict[str, list[str]]:
    """The command line of each part (without ``--device``/``--precision``/``--out``/``--threads``)."""
    if args.dry_run:
        return {
            "demo": ["framework_overhead.py", "--preset", "tiny", "--batch-size", "16", "--steps", "3"]
            + ["--warmup", "1", "--rounds", "1", "--profile", "never"],
            "history": ["history_cost.py", "--preset", "tiny", "--variants", "bank", "--lengths", "16"]
            + ["--batch-size", "16", "--steps", "1", "--warmup", "0", "--paired-steps", "2"],
            "bank": ["bank_ops.py", "--batch", "64", "--length", "20", "--repeats", "2", "--write-repeats", "3"],
            "throughput": ["throughput.py", "--preset", "tiny", "--batch-sizes", "16", "--steps", "1"]
            + ["--warmup", "0", "--rounds", "1"],
        }
    return {
        "demo": ["framework_overhead.py", "--preset", "small", "--steps", "100", "--warmup", "20", "--rounds", "2"],
        "history": ["history_cost.py", "--preset", "small", "--variants", "bank", "--lengths", "0", "1000"]
        + ["--batch-size", "256", "--steps", "5", "--warmup", "2", "--paired-steps", "20"],
        "bank": ["bank_ops.py", "--repeats", "5", "--write-repeats", "50"],
        "throughput": ["throughput.py", "--preset", "small", "--batch-sizes", "256", "1024", "4096"]
        + ["--steps", "5", "--warmup", "2", "--rounds", "1"],
    }


# ---------------------------------------------------------------------------- memory (part c)
def host_available() -> int:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return info["MemAvailable"]


def gpu_free(device: str) -> int | None:
    """Free bytes on the GPU now (None on CPU), read by a short child process: this one keeps no CUDA context."""
    if not device.startswith("cuda"):
        return None
    code = "import torch; print(torch.cuda.mem_get_info()[0])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def bank_plan(catalogs: list[int], dtypes: list[str], device: str, batch: int, length: int) -> tuple[dict, list]:
    """``({dtypes: [catalogs]}, skipped)``: which (catalog, dtype) fit in memory now, grouped by the dtypes
    that fit, and the ones that do not, with the reason. The bank is built in host memory and then moved
    (``ReplicatedMemoryBank(...).to(device)``), so host memory must hold it too; on the GPU it also needs two
    ``batch x length`` reads and 1 GiB of headroom (as ``bank_ops.py`` counts)."""
    from bank_ops import HEADROOM, bytes_per_entry

    item = {"float32": 4, "bfloat16": 2, "float16": 2}
    host, gpu = host_available(), gpu_free(device)
    fits: dict[int, list[str]] = {}
    skipped = []
    for catalog in catalogs:
        for dtype in dtypes:
            table = catalog * bytes_per_entry(128, dtype)
            reads = 2 * batch * length * (128 * item[dtype] + 8)
            why = []
            if table + HEADROOM > host:
                why.append(f"host: needs ~{(table + HEADROOM) / 2**30:.1f} GiB, {host / 2**30:.1f} GiB available")
            on_device = table + reads + HEADROOM
            if gpu is not None and on_device > gpu:
                why.append(f"GPU: needs ~{on_device / 2**30:.1f} GiB, {gpu / 2**30:.1f} GiB free")
            if why:
                skipped.append({"catalog": catalog, "dtype": dtype, "reason": "; ".join(why), "by": "gpu_check"})
                print(f"  bank {catalog:.0e} {dtype}: skipped ({'; '.join(why)})", flush=True)
            else:
                fits.setdefault(catalog, []).append(dtype)
    groups: dict[tuple[str, ...], list[int]] = {}
    for catalog, ds in fits.items():
        groups.setdefault(tuple(ds), []).append(catalog)
    return groups, skipped


# ---------------------------------------------------------------------------- running a part
def run_child(cmd: list[str], timeout: float, log: Path) -> tuple[int | None, float, str]:
    """Run ``cmd`` in its own process group, output to ``log``; kill the whole group after ``timeout`` s.
    Returns (exit status or None when killed, seconds, the end of the output)."""
    env = {**os.environ, **OFFLINE_ENV}
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        rc = None
        try:
            while True:
                left = timeout - (time.perf_counter() - start)
                if left <= 0:
                    break
                try:
                    rc = proc.wait(timeout=min(30.0, left))
                    break
                except subprocess.TimeoutExpired:
                    print(f"    ... {time.perf_counter() - start:.0f} s (budget {timeout:.0f} s)", flush=True)
        finally:
            if rc is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the part and every process it started
                proc.wait()
    seconds = time.perf_counter() - start
    tail = log.read_text(errors="replace")[-1500:]
    return rc, seconds, tail


def newest(out: Path, prefix: str, label: str, since: float) -> Path | None:
    found = [p for p in out.glob(f"{prefix}-*-{label}.json") if p.stat().st_mtime >= since - 1]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


# ---------------------------------------------------------------------------- headline numbers
def summarize(part: str, payloads: list[dict]) -> dict:
    """The numbers of a part's results file(s) that the check reports."""
    p = payloads[0]
    if part == "demo":
        peak = p.get("peak_memory", {})
        return {
            "rows_per_s": _r(p.get("lemur_rows_s"), 1),
            "median_step_s": _r(p.get("lemur_median_s"), 5),
            "batch_size": p.get("batch_size"),
            "peak_mib": peak.get("lemur"),
            "memory": peak.get("memory"),
            "precision": p.get("precision"),
            "steps_timed": (p.get("steps_timed") or {}).get("lemur"),
            "bare_rows_per_s": _r(p.get("bare_rows_s"), 1),
            "lemur_over_bare": p.get("ratio"),
            "overhead_target_met": p.get("met"),
            "overhead_by_group": [
                {"group": g["group"], "extra_ms_per_step": g["extra_ms_per_step"]}
                for g in ((p.get("profile") or {}).get("by_group") or [])[:4]
            ],
        }
    if part == "history":
        pair = next((x for x in p.get("paired", []) if x["variant"] == "bank"), None)
        rows = {r["L"]: r for r in p.get("rows", []) if r.get("variant") == "bank" and r.get("step_s")}
        return {
            "L": pair["L"] if pair else None,
            "ratio_L_over_L0": _r(pair["median_pair_ratio"], 4) if pair else None,
            "target": 1.25,
            "met": bool(pair) and pair["median_pair_ratio"] <= 1.25,
            "step_s_L0": _r(pair["step_s_L0"], 5) if pair else None,
            "step_s_L": _r(pair["step_s_L"], 5) if pair else None,
            "pairs": pair["pairs"] if pair else None,
            "batch_size": p.get("batch_size"),
            "peak_mib_by_L": {str(L): r.get("peak_mib") for L, r in rows.items()},
        }
    if part == "bank":
        rows, skipped = [], []
        for q in payloads:
            skipped += q.get("skipped", [])
            for r in q.get("rows", []):
                rows.append(
                    {
                        k: _r(r.get(k), 4)
                        for k in (
                            "catalog",
                            "dtype",
                            "table_gib",
                            "read_bank_gbps",
                            "read_ratio",
                            "write_bank_gbps",
                            "write_ratio",
                        )
                    }
                )
        return {"rows": rows, "skipped": skipped, "bytes_per_entry": p.get("bytes_per_entry")}
    if part == "throughput":
        return {
            "rows": [
                {k: _r(r.get(k), 1) for k in ("mode", "batch_size", "rows_s", "peak_mib")} for r in p.get("rows", [])
            ],
            "errors": len(p.get("errors", [])),
        }
    return {}


def _r(x, digits: int):
    return round(x, digits) if isinstance(x, float) else x


def headline_rows(parts: list[dict]) -> list[dict]:
    """One CSV row per headline number."""
    out = []
    for p in parts:
        base = {k: p.get(k) for k in ("part", "status", "wall_s", "budget_s", "results_file")}
        s = p.get("summary") or {}
        metrics: list[tuple[str, object]] = []
        if p["part"] == "demo":
            metrics = [(k, s.get(k)) for k in ("rows_per_s", "median_step_s", "peak_mib", "lemur_over_bare")]
        elif p["part"] == "history":
            metrics = [("ratio_L_over_L0", s.get("ratio_L_over_L0")), ("met", s.get("met"))]
        elif p["part"] == "bank":
            for r in s.get("rows", []):
                tag = f"{r['catalog']:.0e}_{r['dtype']}"
                metrics += [(f"read_gbps_{tag}", r["read_bank_gbps"]), (f"read_ratio_{tag}", r["read_ratio"])]
                metrics += [(f"write_gbps_{tag}", r["write_bank_gbps"])]
            metrics += [(f"skipped_{r['catalog']:.0e}_{r['dtype']}", r["reason"]) for r in s.get("skipped", [])]
        elif p["part"] == "throughput":
            metrics = [(f"{r['mode']}_rows_s_batch{r['batch_size']}", r["rows_s"]) for r in s.get("rows", [])]
            metrics += [(f"{r['mode']}_peak_mib_batch{r['batch_size']}", r["peak_mib"]) for r in s.get("rows", [])]
        if not metrics:
            metrics = [("error", (p.get("error") or "")[-200:].replace("\n", " ") or None)]
        out += [{**base, "metric": k, "value": v} for k, v in metrics]
    return out


def plot(parts: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ax = axes[0]
    colors = {"ok": "tab:green", "partial": "tab:orange"}
    names = [p["part"] for p in parts]
    ax.barh(names, [p.get("wall_s") or 0 for p in parts], color=[colors.get(p["status"], "tab:red") for p in parts])
    ax.scatter([p["budget_s"] for p in parts], names, marker="|", s=300, color="black", label="budget")
    for i, p in enumerate(parts):
        ax.text((p.get("wall_s") or 0) + 1, i, p["status"], va="center", fontsize=8)
    ax.set(xlabel="seconds", title="parts: wall time (bar) vs budget (|)")
    ax.invert_yaxis()
    by = {p["part"]: p.get("summary") or {} for p in parts}
    ax = axes[1]
    rows = by.get("throughput", {}).get("rows", [])
    for mode in ("train", "inference"):
        pts = sorted((r["batch_size"], r["rows_s"]) for r in rows if r["mode"] == mode and r.get("rows_s"))
        if pts:
            ax.plot(*zip(*pts), marker="o", label=mode)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="rows / s", title="throughput (part d)")
    if ax.lines:
        ax.legend()
    ax = axes[2]
    rows = by.get("bank", {}).get("rows", [])
    if rows:
        labels = [f"{r['catalog']:.0e}\n{r['dtype']}" for r in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r["read_bank_gbps"] for r in rows], 0.4, label="read GB/s")
        ax.bar([i + 0.2 for i in x], [r["write_bank_gbps"] for r in rows], 0.4, label="write GB/s")
        ax.set_xticks(list(x), labels)
        ax.legend()
    skipped = by.get("bank", {}).get("skipped", [])
    ax.set(ylabel="GB/s", title="memory bank (part c)" + (f", {len(skipped)} skipped" if skipped else ""))
    demo, hist = by.get("demo", {}), by.get("history", {})
    lines = [title]
    if demo.get("rows_per_s"):
        lines.append(
            f"demo: {demo['rows_per_s']:.0f} rows/s at batch {demo['batch_size']} ({demo['precision']}), "
            f"peak {demo['peak_mib']} MiB, lemur/bare {demo['lemur_over_bare']}"
        )
    if hist.get("ratio_L_over_L0"):
        lines.append(f"history: L={hist['L']} / L=0 step {hist['ratio_L_over_L0']} (target <= 1.25)")
    fig.suptitle("\n".join(lines), fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
    save_figure(fig, path)


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny preset, minimal steps, a temporary folder")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    parser.add_argument("--device", default=None, help="default: cuda when available (cpu with --dry-run)")
    parser.add_argument("--precision", default="bf16-mixed", choices=["32-true", "bf16-mixed"])
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default: results/; a temp folder with --dry-run)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads of every part (dry run: 1)")
    parser.add_argument("--budget-s", type=float, default=None, help=f"the whole run's time limit (default {TOTAL_S})")
    parser.add_argument(
        "--bank-catalogs",
        type=int,
        nargs="+",
        default=None,
        help=f"catalog sizes of part c (default {BANK_CATALOGS}; dry run: 10000 100000)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.device is None:
        import torch

        args.device = "cpu" if args.dry_run else ("cuda" if torch.cuda.is_available() else None)
        if args.device is None:
            raise SystemExit(
                "gpu_check: no CUDA device here. On a GPU machine run `make gpu-check`; here, "
                "`make gpu-check GPU_ARGS=--dry-run` (a CPU smoke run), or pass --device cpu for the full settings"
            )
    if args.dry_run and args.threads is None:
        args.threads = 1
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="lemur-gpu-check-")) if args.dry_run else RESULTS
    args.out.mkdir(parents=True, exist_ok=True)
    budgets = DRY_BUDGET_S if args.dry_run else BUDGET_S
    total = args.budget_s or (sum(budgets.values()) if args.dry_run else TOTAL_S)
    catalogs = args.bank_catalogs or ([10_000, 100_000] if args.dry_run else BANK_CATALOGS)
    label = device_label(args.device)
    logs = args.out / "gpu-check-logs"
    commands = part_commands(args)
    common_flags = ["--device", args.device, "--precision", args.precision, "--out", str(args.out)]
    if args.threads:
        common_flags += ["--threads", str(args.threads)]
    todo = [p for p in PARTS if not args.only or p in args.only]
    payload = {
        "benchmark": "gpu_check",
        "machine": machine(args.device),
        "dry_run": args.dry_run,
        "precision": args.precision,
        "budget_s": total,
        "parts": [],
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    print(f"gpu-check: {len(todo)} parts on {args.device} ({args.precision}), results in {args.out}", flush=True)
    preset = "tiny" if args.dry_run else "small"
    try:  # made once here (seconds, offline), so no part spends its budget on it
        t0 = time.perf_counter()
        payload["data"] = _rel(ensure_data(preset))
        print(f"data: {payload['data']} ({time.perf_counter() - t0:.0f} s)", flush=True)
    except Exception as err:  # noqa: BLE001 - the parts will report it too
        payload["data_error"] = f"{type(err).__name__}: {err}"[:600]
        print(f"data: could not make LEMUR-Synth {preset}: {payload['data_error']}", flush=True)
    path = None
    for i, part in enumerate(todo):
        left = total - (time.perf_counter() - started) - 15 * (len(todo) - i - 1)  # keep 15 s for each later part
        budget = min(budgets[part], left)
        record = {"part": part, "budget_s": round(budget, 1), "status": "skipped", "wall_s": 0.0}
        payload["parts"].append(record)
        if budget < 15:
            record["error"] = f"out of time ({total:.0f} s for the whole check)"
            print(f"[{i + 1}/{len(todo)}] {part}: skipped, {record['error']}", flush=True)
            path = write("gpu-check", payload, args.device, args.out)
            continue
        print(f"[{i + 1}/{len(todo)}] {part}: running (budget {budget:.0f} s)", flush=True)
        start, t0 = time.time(), time.perf_counter()
        try:
            record.update(run_part(part, commands[part], common_flags, args, catalogs, budget, logs, label))
        except Exception as err:  # noqa: BLE001 - record and go on with the next part
            record.update({"status": "failed", "error": f"{type(err).__name__}: {err}"[:1000]})
        record["wall_s"] = round(time.perf_counter() - t0, 1)
        record["started"] = time.strftime("%H:%M:%S", time.localtime(start))
        print(
            f"[{i + 1}/{len(todo)}] {part}: {record['status']} in {record['wall_s']:.0f} s; {brief(record)}", flush=True
        )
        path = write("gpu-check", payload, args.device, args.out)  # after every part: nothing is lost later
    payload["wall_s"] = round(time.perf_counter() - started, 1)
    payload["all_ok"] = all(p["status"] == "ok" for p in payload["parts"])
    path = write("gpu-check", payload, args.device, args.out)
    rows = headline_rows(payload["parts"])
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["part", "status", "wall_s", "budget_s", "metric", "value", "results_file"])
        w.writeheader()
        w.writerows(rows)
    plot(
        payload["parts"],
        path.with_suffix(".png"),
        f"gpu-check {payload['machine'].get('gpu', args.device)}{' (dry run)' if args.dry_run else ''}, "
        f"{payload['wall_s']:.0f} s",
    )
    print(
        f"gpu-check: {'all parts ok' if payload['all_ok'] else 'some parts did not finish'} "
        f"in {payload['wall_s']:.0f} s; wrote {path} (+ .csv, .png; logs in {logs})"
    )
    if not payload["all_ok"]:
        raise SystemExit(1)


def run_part(part, cmd, flags, args, catalogs, budget, logs, label) -> dict:
    """Run one part's script(s) within ``budget`` seconds; its record: status, command, results file, summary."""
    deadline = time.perf_counter() + budget
    log = logs / f"{part}.log"
    if part == "bank":
        batch = int(cmd[cmd.index("--batch") + 1]) if "--batch" in cmd else 2048
        length = int(cmd[cmd.index("--length") + 1]) if "--length" in cmd else 1000
        groups, skipped = bank_plan(catalogs, BANK_DTYPES, args.device, batch, length)
        runs = [
            (cmd + ["--catalogs", *map(str, cs), "--dtypes", *ds], args.out if n == 0 else args.out / f"bank-ops-{n}")
            for n, (ds, cs) in enumerate(groups.items())
        ]
    else:
        runs, skipped = [(cmd, args.out)], []
    record: dict = {"commands": [], "results_files": []}
    payloads, statuses, tails = [], [], []
    for script_args, out in runs:
        full = [sys.executable, str(HERE / script_args[0]), *script_args[1:], *flags]
        full[full.index("--out") + 1] = str(out)
        shown = [_rel(out) if x == str(out) else x for x in full[2:]]
        record["commands"].append("python " + " ".join([f"benchmarks/{script_args[0]}", *shown]))
        since = time.time()
        rc, _, tail = run_child(full, deadline - time.perf_counter(), log)
        prefix = Path(script_args[0]).stem.replace("_", "-")
        found = newest(out, prefix, label, since)
        if found is not None:
            payloads.append(json.loads(found.read_text()))
            record["results_files"].append(_rel(found))
        statuses.append("timeout" if rc is None else ("ok" if rc == 0 and found else "partial" if found else "failed"))
        if rc != 0:
            tails.append(tail)
    if part == "bank" and not runs:
        statuses.append("ok")  # nothing fits: every size is recorded as skipped
    record["status"] = next((s for s in ("timeout", "failed", "partial") if s in statuses), "ok")
    if payloads or part == "bank":
        record["summary"] = summarize(part, payloads or [{}])
    if skipped:
        record["summary"]["skipped"] = skipped + record["summary"].get("skipped", [])
    if tails:
        record["error"] = tails[-1][-1200:]
    record["results_file"] = record["results_files"][0] if record["results_files"] else None
    record["log"] = _rel(log)
    return record


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def brief(record: dict) -> str:
    s = record.get("summary") or {}
    part = record["part"]
    if part == "demo" and s.get("rows_per_s"):
        return (
            f"{s['rows_per_s']:.0f} rows/s at batch {s['batch_size']}, peak {s['peak_mib']} MiB "
            f"({s['memory']}), lemur/bare {s['lemur_over_bare']}"
        )
    if part == "history" and s.get("ratio_L_over_L0"):
        return f"L={s['L']} / L=0: {s['ratio_L_over_L0']} (target <= 1.25: {'met' if s['met'] else 'NOT met'})"
    if part == "bank":
        done = ", ".join(f"{r['catalog']:.0e} {r['dtype']} read {r['read_bank_gbps']} GB/s" for r in s.get("rows", []))
        return (done or "no size ran") + (f"; {len(s.get('skipped', []))} skipped" if s.get("skipped") else "")
    if part == "throughput" and s.get("rows"):
        return ", ".join(f"{r['mode']} b{r['batch_size']} {r['rows_s']:.0f} rows/s" for r in s["rows"])
    return (record.get("error") or "")[-300:].replace("\n", " | ")


if __name__ == "__main__":
    main()
