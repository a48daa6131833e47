"""Rows/s of the demo recipe, training and inference, vs batch size, with peak memory.

For each batch size (default 64, 256, 1,024) and mode, one subprocess builds the recipe's model
and data (``recipes/lemur.yaml`` on ``small``, as ``make demo`` trains it), holds ``--steps`` +
``--warmup`` batches in memory and times:

* ``train``: training steps (forward + backward + optimizer step, memory-bank write included) on
  train batches;
* ``inference``: the evaluation forward (``model.eval()``, ``torch.inference_mode``, the scores
  that validation/test/predict compute) on validation batches of the same size.

rows/s = batch size / median step time. Peak memory is that subprocess's own: peak RSS on CPU
(``peak_mib``; it includes the Python process, libraries and the dataset, so ``base_mib``, the
RSS before the first step, is written too), ``torch.cuda.max_memory_allocated`` on GPU. The
subprocesses run in ``--rounds`` interleaved rounds; medians over the rounds are reported.
Writes ``results/throughput-<date>-<device>.json`` + ``.csv`` + ``.png``.

    python benchmarks/throughput.py
    python benchmarks/throughput.py --device cuda --precision bf16-mixed --batch-sizes 256 1024 4096
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    Timer,
    add_recipe_args,
    add_run_args,
    build,
    device_label,
    ensure_data,
    machine,
    save_figure,
    set_threads,
    write,
)

MODES = ("train", "inference")


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def one(args) -> dict:
    """Time one (mode, batch size) in this process; print the result as JSON."""
    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    root = ensure_data(args.preset)
    bs = args.batch_size
    model, dm = build(
        args.recipe,
        [
            "--data.init_args.root",
            str(root),
            "--data.init_args.batch_size",
            str(bs),
            "--data.init_args.eval_batch_size",
            str(bs),
            "--data.init_args.num_workers",
            "0",
        ],
    )
    device = torch.device(args.device)
    model.to(device)
    loader = dm.train_dataloader() if args.mode == "train" else dm.val_dataloader()
    batches = []
    for batch in loader:
        if len(batch["label"]) == bs:  # full batches only
            batches.append({k: v.to(device) for k, v in batch.items()})
        if len(batches) == args.warmup + args.steps:
            break
    if not batches:
        raise SystemExit(f"no full batch of {bs} rows in the {args.mode} split")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    if args.mode == "train":
        model.train()
        opt = model.configure_optimizers()
        opt = opt["optimizer"] if isinstance(opt, dict) else opt

        def step(batch, i):
            with autocast:
                loss = model.training_step(batch, i)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step(batch, i):
            with torch.inference_mode(), autocast:
                model.score(batch)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = rss_mib()
    times = []
    for i in range(args.warmup + args.steps):
        with Timer(args.device) as t:
            step(batches[i % len(batches)], i)
        if i >= args.warmup:
            times.append(t.seconds)
    if device.type == "cuda":
        peak, base, memory = torch.cuda.max_memory_allocated() / 2**20, 0.0, "cuda allocated"
    else:
        peak, memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process RSS"
    s = float(np.median(times))
    result = {
        "mode": args.mode,
        "batch_size": bs,
        "step_s": s,
        "rows_s": bs / s,
        "steps_timed": len(times),
        "peak_mib": round(peak, 1),
        "base_mib": round(base, 1),
        "memory": memory,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return result


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in MODES:
        pts = sorted(
            (r["batch_size"], r["rows_s"], r["peak_mib"], r["base_mib"])
            for r in rows
            if r["mode"] == mode and r.get("rows_s")
        )
        if pts:
            bs, rate, peak, base = zip(*pts)
            left.plot(bs, rate, marker="o", label=mode)
            right.plot(bs, peak, marker="o", label=f"{mode}: peak")
            if any(base):
                right.plot(bs, base, ls=":", marker=".", label=f"{mode}: before the first step")
    left.set(xscale="log", yscale="log", xlabel="batch size", ylabel="rows / s", title=title)
    right.set(xscale="log", xlabel="batch size", ylabel="MiB", title="peak memory")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every (mode, batch size)")
    add_run_args(parser)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.mode:
        one(args)
        return
    runs: dict[tuple[str, int], list[dict]] = {}
    errors = []
    for r in range(args.rounds):
        for mode in args.modes:
            for bs in args.batch_sizes:
                cmd = [
                    sys.executable,
                    __file__,
                    "--mode",
                    mode,
                    "--batch-size",
                    str(bs),
                    "--recipe",
                    *args.recipe,
                    "--preset",
                    args.preset,
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                    "--device",
                    args.device,
                    "--precision",
                    args.precision,
                ]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    errors.append(
                        {"mode": mode, "batch_size": bs, "round": r, "error": (done.stderr or done.stdout)[-600:]}
                    )
                    print(f"round {r} {mode:>9} batch {bs:<5} failed: {errors[-1]['error'][-200:]}", flush=True)
                    continue
                res = json.loads(line[7:])
                runs.setdefault((mode, bs), []).append(res)
                print(
                    f"round {r} {mode:>9} batch {bs:<5} {res['rows_s']:8.0f} rows/s, peak {res['peak_mib']:.0f} MiB",
                    flush=True,
                )
    rows = []
    for (mode, bs), results in runs.items():
        rows.append(
            {
                "mode": mode,
                "batch_size": bs,
                "rows_s": statistics.median(x["rows_s"] for x in results),
                "step_s": statistics.median(x["step_s"] for x in results),
                "rounds": len(results),
                "peak_mib": max(x["peak_mib"] for x in results),
                "base_mib": statistics.median(x["base_mib"] for x in results),
                "memory": results[0]["memory"],
                "rows_s_per_round": [round(x["rows_s"], 1) for x in results],
            }
        )
    for mode in args.modes:
        ref = next((r for r in sorted(rows, key=lambda r: r["batch_size"]) if r["mode"] == mode), None)
        for r in rows:
            if r["mode"] == mode and ref:
                r["speedup_vs_smallest_batch"] = round(r["rows_s"] / ref["rows_s"], 2)
    train = {r["batch_size"]: r["rows_s"] for r in rows if r["mode"] == "train"}
    for r in rows:
        if r["mode"] == "inference" and r["batch_size"] in train:
            r["inference_vs_train"] = round(r["rows_s"] / train[r["batch_size"]], 2)
    rows.sort(key=lambda r: (r["mode"], r["batch_size"]))
    payload = {
        "benchmark": "throughput",
        "machine": machine(args.device),
        "recipe": args.recipe,
        "preset": args.preset,
        "precision": args.precision,
        "steps": args.steps,
        "rounds": args.rounds,
        "rows": rows,
        "errors": errors,
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write("throughput", payload, args.device, args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        keys = [
            "mode",
            "batch_size",
            "rows_s",
            "step_s",
            "speedup_vs_smallest_batch",
            "inference_vs_train",
            "peak_mib",
            "base_mib",
            "memory",
            "rounds",
        ]
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    plot(rows, path.with_suffix(".png"), f"throughput vs batch size ({device_label(args.device)}, {args.precision})")
    for r in rows:
        print(
            f"{r['mode']:>9} batch {r['batch_size']:<5} {r['rows_s']:8.0f} rows/s  "
            f"x{r.get('speedup_vs_smallest_batch', 1):<5} "
            f"peak {r['peak_mib']:.0f} MiB"
            + (f"  inference/train {r['inference_vs_train']}" if "inference_vs_train" in r else "")
        )
    print(f"wrote {path} (+ .csv, .png)")
    if errors:
        raise SystemExit(f"{len(errors)} configuration(s) failed (see the JSON)")


if __name__ == "__main__":
    main()
