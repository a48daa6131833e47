"""What a long multimodal history costs per training step: memory bank vs naive re-encoding vs two-stage.

For each history length L, one training step (forward + backward + optimizer step) of the recipe's
model is timed on a fixed batch whose short/long histories hold L real documents (all valid):

* ``bank``: the recipe as it is: history vectors are memory-bank reads (LEMUR);
* ``naive``: every history document runs the document encoder, with gradient, every step (what
  end-to-end training without a bank would do); stopped once a step exceeds ``--time-cap``;
* ``two_stage``: encoders frozen, target and history vectors from the bank (precomputed
  embeddings); no SQDC.

Each (variant, L) runs in its own subprocess so its peak memory (RSS on CPU, allocated on GPU) is
its own. Writes ``results/history-cost-<date>-<device>.json`` + ``.csv`` + ``.png``.

    python benchmarks/history_cost.py                      # CPU, recipes/lemur.yaml, L in 0 16 64 256 1000
    python benchmarks/history_cost.py --device cuda --precision bf16-mixed
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    add_recipe_args,
    add_run_args,
    build,
    device_label,
    ensure_data,
    machine,
    save_figure,
    set_threads,
    timed_step,
    write,
)

VARIANTS = {
    "bank": [],
    "naive": [],
    "two_stage": [
        "--model.init_args.freeze_encoders",
        "true",
        "--model.init_args.sqdc",
        "null",
        "--model.init_args.sampling.forward",
        "0.0",
        "--model.init_args.sampling.backward",
        "0.0",
    ],
}


def naive_history(model, store):
    """Replace the bank read of ``model`` by encoding every history document (with gradient)."""
    import torch

    read = model._history_items

    def history_items(batch, name, keep=0):
        ids, mask = batch[f"hist_{name}"], batch[f"hist_{name}_mask"].bool()
        if ids.numel() == 0:
            return read(batch, name, keep)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        docs = {k: v.to(ids.device) for k, v in store.documents(uniq.cpu().numpy()).items()}
        vectors = model.doc_encoder(docs)  # [U, dim], with gradient
        table = model.history_proj(vectors) if model.history_proj is not None else None
        return table, inverse, mask, vectors[inverse[:, :keep]] if keep else None

    model._history_items = history_items


def with_history(batch: dict, length: int, dm, device) -> dict:
    """A copy of ``batch`` whose short/long histories hold ``length`` random real documents (all valid)."""
    import numpy as np
    import torch

    batch, b = dict(batch), len(batch["label"])
    hist = torch.from_numpy(np.random.default_rng(0).integers(0, dm.num_docs, size=(b, length)))
    batch["hist_long"], batch["hist_long_mask"] = hist, torch.ones(b, length, dtype=torch.bool)
    s = min(dm.history_config.short_len, length)
    batch["hist_short"], batch["hist_short_mask"] = hist[:, :s].contiguous(), torch.ones(b, s, dtype=torch.bool)
    return {k: v.to(device) for k, v in batch.items()}


def paired(args) -> dict:
    """``--paired``: one model, steps alternating between L = 0 and L = ``--length`` in this process,
    so both see the same load; returns the medians and the median of the per-pair ratios."""
    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    root = ensure_data(args.preset)
    model, dm = build(
        args.recipe,
        [
            "--data.init_args.root",
            str(root),
            "--data.init_args.batch_size",
            str(args.batch_size),
            "--data.init_args.num_workers",
            "0",
            *VARIANTS[args.variant],
        ],
    )
    device = torch.device(args.device)
    model.to(device).train()
    first = next(iter(dm.train_dataloader()))
    batches = {0: with_history(first, 0, dm, device), args.length: with_history(first, args.length, dm, device)}
    bank = model.memory_bank
    bank.write(torch.arange(dm.num_docs, device=device), torch.randn(dm.num_docs, bank.dim, device=device), step=0)
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    times = {L: [] for L in batches}
    for i in range(args.warmup + args.steps):
        for L, batch in batches.items() if i % 2 == 0 else reversed(batches.items()):  # alternate which goes first
            seconds = timed_step(model, opt, batch, i, autocast, args.device)
            if i >= args.warmup:
                times[L].append(seconds)
    short, long_ = times[0], times[args.length]
    result = {
        "variant": args.variant,
        "L": args.length,
        "batch_size": len(first["label"]),
        "pairs": len(short),
        "step_s_L0": float(np.median(short)),
        "step_s_L": float(np.median(long_)),
        "ratio_of_medians": float(np.median(long_) / np.median(short)),
        "median_pair_ratio": float(np.median(np.array(long_) / np.array(short))),
    }
    print("RESULT " + json.dumps(result), flush=True)
    return result


def one(args) -> dict:
    """Time one (variant, L) in this process; print the result as JSON."""
    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    root = ensure_data(args.preset)
    model, dm = build(
        args.recipe,
        [
            "--data.init_args.root",
            str(root),
            "--data.init_args.batch_size",
            str(args.batch_size),
            "--data.init_args.num_workers",
            "0",
            *VARIANTS[args.variant],
        ],
    )
    if getattr(model, "memory_bank", None) is None:
        raise SystemExit(f"{args.recipe}: the model has no memory_bank; this benchmark compares bank histories")
    device = torch.device(args.device)
    model.to(device).train()
    first = next(iter(dm.train_dataloader()))
    b, L = len(first["label"]), args.length
    batch = with_history(first, L, dm, device)
    bank = model.memory_bank
    # a warm bank
    bank.write(torch.arange(dm.num_docs, device=device), torch.randn(dm.num_docs, bank.dim, device=device), step=0)
    if args.variant == "naive":
        naive_history(model, dm.store)
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.warmup + args.steps):
        seconds = timed_step(model, opt, batch, i, autocast, args.device)
        if i >= args.warmup:
            times.append(seconds)
        if seconds > args.time_cap:
            break
    peak = (
        torch.cuda.max_memory_allocated()
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ) / 2**20
    result = {
        "variant": args.variant,
        "L": L,
        "batch_size": b,
        "step_s": float(np.median(times)) if times else None,
        "steps_timed": len(times),
        "peak_mib": round(peak, 1),
        "memory": "cuda allocated" if device.type == "cuda" else "process RSS",
        "capped": bool(times) is False or times[-1] > args.time_cap,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return result


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for variant in VARIANTS:
        pts = [(r["L"], r["step_s"], r["peak_mib"]) for r in rows if r["variant"] == variant and r.get("step_s")]
        if pts:
            xs, ts, ms = zip(*pts)
            left.plot([max(x, 1) for x in xs], ts, marker="o", label=variant)
            right.plot([max(x, 1) for x in xs], ms, marker="o", label=variant)
    left.set(
        xscale="log", yscale="log", xlabel="history length L (0 plotted at 1)", ylabel="s / training step", title=title
    )
    right.set(xscale="log", xlabel="history length L", ylabel="peak MiB", title="peak memory")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(parser)
    parser.add_argument("--lengths", type=int, nargs="+", default=[0, 16, 64, 256, 1000])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--time-cap", type=float, default=60.0, help="seconds per step beyond which a variant stops growing L"
    )
    add_run_args(parser)
    parser.add_argument(
        "--paired-steps",
        type=int,
        default=20,
        help="pairs of interleaved L=0 / L=max steps per variant (bank, two_stage) for the target ratio; 0 = skip",
    )
    parser.add_argument("--paired", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.variant:
        paired(args) if args.paired else one(args)
        return
    rows = []
    for variant in args.variants:
        for L in args.lengths:
            cmd = [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--length",
                str(L),
                "--recipe",
                *args.recipe,
                "--preset",
                args.preset,
                "--batch-size",
                str(args.batch_size),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--time-cap",
                str(args.time_cap),
                "--device",
                args.device,
                "--precision",
                args.precision,
            ]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            row = (
                json.loads(line[7:])
                if line
                else {"variant": variant, "L": L, "error": (done.stderr or done.stdout)[-600:]}
            )
            rows.append(row)
            print(
                f"{variant:>10} L={L:<5} "
                + (
                    f"{row['step_s']:.3f} s/step, peak {row['peak_mib']:.0f} MiB"
                    if row.get("step_s")
                    else f"failed/capped: {row.get('error', '')[-200:]}"
                ),
                flush=True,
            )
            if not row.get("step_s") or row.get("capped"):
                break  # longer histories only cost more
    base = {r["variant"]: r["step_s"] for r in rows if r["L"] == 0 and r.get("step_s")}
    for r in rows:
        if r.get("step_s") and r["variant"] in base:
            r["ratio_vs_L0"] = round(r["step_s"] / base[r["variant"]], 3)
    bank = {r["L"]: r["step_s"] for r in rows if r["variant"] == "bank" and r.get("step_s")}
    for r in rows:
        if r["variant"] == "naive" and r.get("step_s") and bank.get(r["L"]):
            r["ratio_vs_bank"] = round(r["step_s"] / bank[r["L"]], 2)
    pairs = []
    longest = max(args.lengths)
    for variant in (
        [v for v in ("bank", "two_stage") if v in args.variants] if args.paired_steps and longest > 0 else []
    ):
        cmd = [
            sys.executable,
            __file__,
            "--paired",
            "--variant",
            variant,
            "--length",
            str(longest),
            "--recipe",
            *args.recipe,
            "--preset",
            args.preset,
            "--batch-size",
            str(args.batch_size),
            "--steps",
            str(args.paired_steps),
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
        if line:
            pairs.append(json.loads(line[7:]))
            print(
                f"{variant:>10} paired L={longest} vs L=0: median pair ratio {pairs[-1]['median_pair_ratio']:.3f} "
                f"({pairs[-1]['step_s_L']:.3f} / {pairs[-1]['step_s_L0']:.3f} s)",
                flush=True,
            )
        else:
            print(f"{variant:>10} paired run failed: {(done.stderr or done.stdout)[-300:]}", flush=True)
    targets = {}
    bank_pair = next((p for p in pairs if p["variant"] == "bank" and p["L"] == 1000), None)
    if bank_pair:
        targets["bank L=1000 / bank L=0, interleaved steps (target <= 1.25)"] = round(bank_pair["median_pair_ratio"], 3)
    if 0 in bank and 1000 in bank:
        targets["bank L=1000 / bank L=0, separate processes"] = round(bank[1000] / bank[0], 3)
    naive64 = next((r["step_s"] for r in rows if r["variant"] == "naive" and r["L"] == 64 and r.get("step_s")), None)
    if naive64 and 64 in bank:
        targets["naive L=64 / bank L=64 (target >= 10)"] = round(naive64 / bank[64], 2)
    payload = {
        "benchmark": "history_cost",
        "machine": machine(args.device),
        "recipe": args.recipe,
        "preset": args.preset,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "rows": rows,
        "paired": pairs,
        "targets": targets,
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write("history-cost", payload, args.device, args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        keys = [
            "variant",
            "L",
            "batch_size",
            "step_s",
            "ratio_vs_L0",
            "ratio_vs_bank",
            "peak_mib",
            "memory",
            "steps_timed",
        ]
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(r for r in rows if r.get("step_s"))
    plot(
        rows,
        path.with_suffix(".png"),
        f"training step vs history length ({device_label(args.device)}, batch {args.batch_size})",
    )
    print(json.dumps(targets, indent=1))
    print(f"wrote {path} (+ .csv, .png)")


if __name__ == "__main__":
    main()
