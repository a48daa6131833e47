"""What p / q row sampling of the document encoder saves: counted FLOPs and measured step time (paper Table 4).

One process builds the recipe's model once and switches ``model.sampling`` between the variants

* ``none``: p = q = 1 (every row's document runs the encoder forward and backward);
* ``p100_q20``: p = 1, q = 0.2; ``p20_q20``: p = q = 0.2 (the paper's deployed setting); ``p10_q10``: p = q = 0.1,

so all variants share weights, batches and a warm memory bank (every document written once:
an unseen document is always encoded, whatever p is). For each variant:

* FLOPs per row of one training step (forward + backward), counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (``lemur.profiling.count_flops_per_row``) over
  ``--flop-steps`` steps on each of ``--batches`` batches, averaged: sampling draws random rows
  each step, so the count varies a little from step to step (min/max are written too);
* the median time of a training step (forward + backward + optimizer step), the variants
  interleaved step by step in the same process, so the time ratios are side by side.

Ratios are against ``none`` and are printed next to the paper's (4,303 : 3,232 : 2,439 : 2,262
GFLOPs per batch of 2,048). Writes ``results/sampling-flops-<date>-<device>.json`` + ``.csv`` + ``.png``.

    python benchmarks/sampling_flops.py                    # CPU, recipes/lemur.yaml on small, batch 256
    python benchmarks/sampling_flops.py --device cuda --precision bf16-mixed --batch-size 2048
"""

from __future__ import annotations

import argparse
import csv
import statistics
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

VARIANTS = {"none": (1.0, 1.0), "p100_q20": (1.0, 0.2), "p20_q20": (0.2, 0.2), "p10_q10": (0.1, 0.1)}
PAPER_GFLOPS = {"none": 4303, "p100_q20": 3232, "p20_q20": 2439, "p10_q10": 2262}  # Table 4, per batch of 2,048


def measure(args) -> dict:
    import numpy as np
    import torch

    from lemur.profiling import count_flops_per_row, count_params
    from lemur.systems.ranker import Sampling

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
        ],
    )
    bank = getattr(model, "memory_bank", None)
    if bank is None:
        raise SystemExit(f"{args.recipe}: the model has no memory_bank; row sampling needs one")
    device = torch.device(args.device)
    model.to(device).train()
    loader = iter(dm.train_dataloader())
    batches = [{k: v.to(device) for k, v in next(loader).items()} for _ in range(args.batches)]
    # a warm bank
    bank.write(torch.arange(dm.num_docs, device=device), torch.randn(dm.num_docs, bank.dim, device=device), step=0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")

    flops = {}
    for name in args.variants:
        model.sampling = Sampling(*VARIANTS[name])
        counts = []
        for batch in batches:
            with autocast:
                counts.append(count_flops_per_row(model, batch, steps=args.flop_steps))
        flops[name] = counts
        print(f"{name:>9}: {statistics.mean(c['total'] for c in counts) / 1e6:.2f} MFLOPs/row", flush=True)

    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    times = {name: [] for name in args.variants}
    encoded = {name: [] for name in args.variants}
    for i in range(args.warmup + args.steps):
        for name in args.variants:  # interleaved: every variant sees the same machine load
            model.sampling = Sampling(*VARIANTS[name])
            batch = batches[i % len(batches)]
            seconds = timed_step(model, opt, batch, i, autocast, args.device)
            if i >= args.warmup:
                times[name].append(seconds)
                encoded[name].append(float(model.bank_stats["encoded_rows"]))

    rows = []
    for name in args.variants:
        counts = flops[name]
        per_step = [x for c in counts for x in c["per_step_total"]]
        components = {
            k: statistics.mean(c["forward_by_component"].get(k, 0.0) for c in counts)
            for k in counts[0]["forward_by_component"]
        }
        p, q = VARIANTS[name]
        rows.append(
            {
                "variant": name,
                "p": p,
                "q": q,
                "batch_size": args.batch_size,
                "mflops_per_row": statistics.mean(per_step) / 1e6,
                "mflops_per_row_min": min(per_step) / 1e6,
                "mflops_per_row_max": max(per_step) / 1e6,
                "forward_mflops_per_row": statistics.mean(c["forward"] for c in counts) / 1e6,
                "backward_mflops_per_row": statistics.mean(c["backward"] for c in counts) / 1e6,
                "doc_encoder_forward_mflops_per_row": components.get("doc_encoder", 0.0) / 1e6,
                "forward_by_component_mflops": {k: round(v / 1e6, 4) for k, v in components.items()},
                "gflops_per_2048_rows": statistics.mean(per_step) * 2048 / 1e9,
                "flop_steps_counted": len(per_step),
                "step_s": float(np.median(times[name])),
                "steps_timed": len(times[name]),
                "encoded_rows": float(np.mean(encoded[name])),
                "paper_gflops": PAPER_GFLOPS[name],
            }
        )
    base = next((r for r in rows if r["variant"] == "none"), None)
    for r in rows:
        r["paper_ratio"] = round(r["paper_gflops"] / PAPER_GFLOPS["none"], 3)
        if base:
            r["flops_ratio"] = round(r["mflops_per_row"] / base["mflops_per_row"], 3)
            r["time_ratio"] = round(r["step_s"] / base["step_s"], 3)
    return {"rows": rows, "params": count_params(model), "num_docs": dm.num_docs}


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r["variant"] for r in rows]
    x = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bars = [
        ("paper FLOPs (Table 4)", "paper_ratio"),
        ("counted FLOPs", "flops_ratio"),
        ("measured step time", "time_ratio"),
    ]
    for i, (label, key) in enumerate(bars):
        left.bar(x + (i - 1) * 0.27, [r.get(key, 0) for r in rows], 0.27, label=label)
    left.set(xticks=x, xticklabels=names, ylabel="ratio vs no sampling (p = q = 1)", title=title)
    left.axhline(1.0, color="grey", lw=0.8)
    left.legend(fontsize=8)
    fwd = [r["forward_mflops_per_row"] for r in rows]
    doc = [r["doc_encoder_forward_mflops_per_row"] for r in rows]
    right.bar(x, doc, label="forward: document encoder")
    right.bar(x, [f - d for f, d in zip(fwd, doc)], bottom=doc, label="forward: rest")
    right.bar(x, [r["backward_mflops_per_row"] for r in rows], bottom=fwd, label="backward (all)")
    right.set(xticks=x, xticklabels=names, ylabel="MFLOPs per row", title="counted FLOPs per row of a training step")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(parser)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--batches", type=int, default=2, help="distinct batches the FLOPs are counted (and the steps timed) on"
    )
    parser.add_argument(
        "--flop-steps", type=int, default=3, help="counted steps per batch and variant (sampling is random)"
    )
    parser.add_argument("--steps", type=int, default=7, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    add_run_args(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    result = measure(args)
    rows = result["rows"]
    print(f"{'variant':>9} {'p':>4} {'q':>4} {'MFLOPs/row':>10} {'ratio':>6} {'paper':>6} {'s/step':>7} {'t ratio':>7}")
    for r in rows:
        print(
            f"{r['variant']:>9} {r['p']:>4} {r['q']:>4} {r['mflops_per_row']:>10.2f} "
            f"{r.get('flops_ratio', float('nan')):>6.3f} "
            f"{r['paper_ratio']:>6.3f} {r['step_s']:>7.3f} {r.get('time_ratio', float('nan')):>7.3f}"
        )
    payload = {
        "benchmark": "sampling_flops",
        "machine": machine(args.device),
        "recipe": args.recipe,
        "preset": args.preset,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "params": result["params"],
        "rows": rows,
        "notes": "FLOPs counted by FlopCounterMode (matmul/conv/attention; 1 multiply-add = 2 FLOPs), forward + "
        "backward, "
        "averaged over flop_steps_counted steps (sampling is random); each distinct document of a batch is "
        "encoded once; the memory bank is warm; step time = median of interleaved steps incl. optimizer step",
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write("sampling-flops", payload, args.device, args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        keys = [
            "variant",
            "p",
            "q",
            "batch_size",
            "mflops_per_row",
            "mflops_per_row_min",
            "mflops_per_row_max",
            "forward_mflops_per_row",
            "backward_mflops_per_row",
            "doc_encoder_forward_mflops_per_row",
            "flops_ratio",
            "paper_gflops",
            "paper_ratio",
            "step_s",
            "time_ratio",
            "encoded_rows",
            "steps_timed",
            "flop_steps_counted",
        ]
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    plot(
        rows, path.with_suffix(".png"), f"p / q sampling vs none ({device_label(args.device)}, batch {args.batch_size})"
    )
    print(f"wrote {path} (+ .csv, .png)")


if __name__ == "__main__":
    main()
