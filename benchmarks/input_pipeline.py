"""Can the data pipeline keep up? Rows/s the train DataLoader delivers vs rows/s the model trains on.

One process builds the recipe's model and ``LemurDataModule`` (same batch size) and measures, in
``--rounds`` interleaved rounds (medians are reported):

* ``loader``: rows/s of ``train_dataloader()`` alone, for each ``num_workers`` in ``--workers``
  (default 0, 1, 2): ``--batches`` batches after the first (worker start-up and the first batch
  are timed apart, as ``first_batch_s``);
* ``model``: rows/s of training steps (forward + backward + optimizer step) on batches already
  in memory: what the model can consume;
* ``train_from_loader``: rows/s of the same training steps fed by the loader (each worker
  setting): what training gets end to end. On a small CPU the workers share cores with the
  model, so this can be below both.

Target: loader >= 3x the model (per ``num_workers``; the recipe uses 1). ``--profile`` adds the
top functions of a cProfile of the in-process loader (``num_workers`` = 0) to the JSON.
Writes ``results/input-pipeline-<date>-<device>.json`` + ``.csv`` + ``.png``.

    python benchmarks/input_pipeline.py
    python benchmarks/input_pipeline.py --device cuda --batch-size 2048
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

TARGET = 3.0


def loader_rate(dm, workers: int, batches: int) -> tuple[float, float]:
    """(rows/s over ``batches`` batches after the first, seconds to the first batch)."""
    dm.hparams.num_workers = workers
    with Timer("cpu") as first:
        it = iter(dm.train_dataloader())
        next(it)
    with Timer("cpu") as t:
        for _ in range(batches):
            rows_b = len(next(it)["label"])
    del it  # stops the workers
    return batches * rows_b / t.seconds, first.seconds


def train_rate(model, opt, batches, device, autocast, args) -> float:
    """rows/s of training steps on ``batches`` (an iterable; moved to ``device`` inside the timing)."""
    rows = 0
    with Timer(args.device) as t:
        for i, batch in enumerate(batches):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast:
                loss = model.training_step(batch, i)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rows += len(batch["label"])
    return rows / t.seconds


def from_loader(dm, workers: int, n: int):
    dm.hparams.num_workers = workers
    it = iter(dm.train_dataloader())
    next(it)  # start-up excluded, like the loader measurement
    for _ in range(n):
        yield next(it)


def profile_loader(dm, batches: int, top: int = 12) -> list[dict]:
    import cProfile
    import pstats

    dm.hparams.num_workers = 0
    it = iter(dm.train_dataloader())
    next(it)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(batches):
        next(it)
    prof.disable()
    stats = pstats.Stats(prof).sort_stats("tottime")
    out = []
    for (file, line, func), (_cc, nc, tt, ct, _) in list(stats.stats.items()):
        out.append(
            {
                "function": f"{Path(file).name}:{line}({func})",
                "calls": nc,
                "tottime_s": round(tt, 4),
                "cumtime_s": round(ct, 4),
            }
        )
    return sorted(out, key=lambda r: -r["tottime_s"])[:top]


def measure(args) -> dict:
    import torch

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    root = ensure_data(args.preset)
    with Timer("cpu") as setup:
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
    device = torch.device(args.device)
    model.to(device).train()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    it = iter(dm.train_dataloader())
    held = [next(it) for _ in range(args.steps)]
    del it
    train_rate(model, opt, held[: args.warmup], device, autocast, args)  # warm-up
    loader = {w: [] for w in args.workers}
    first = {w: [] for w in args.workers}
    fed = {w: [] for w in args.workers}
    model_rates = []
    for _ in range(args.rounds):
        model_rates.append(train_rate(model, opt, held, device, autocast, args))
        for w in args.workers:
            rate, first_s = loader_rate(dm, w, args.batches)
            loader[w].append(rate)
            first[w].append(first_s)
            fed[w].append(train_rate(model, opt, from_loader(dm, w, args.steps), device, autocast, args))
    model_rate = statistics.median(model_rates)
    rows = []
    for w in args.workers:
        rate = statistics.median(loader[w])
        rows.append(
            {
                "num_workers": w,
                "batch_size": args.batch_size,
                "loader_rows_s": rate,
                "first_batch_s": statistics.median(first[w]),
                "model_rows_s": model_rate,
                "loader_vs_model": round(rate / model_rate, 2),
                "target_met": rate / model_rate >= TARGET,
                "train_from_loader_rows_s": statistics.median(fed[w]),
                "train_from_loader_vs_model": round(statistics.median(fed[w]) / model_rate, 3),
            }
        )
    result = {
        "rows": rows,
        "model_rows_s_per_round": model_rates,
        "setup_s": setup.seconds,
        "train_rows": int(len(dm.splits["train"])),
    }
    if args.profile:
        result["loader_profile"] = profile_loader(dm, args.batches)
    return result


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, [r["loader_rows_s"] for r in rows], 0.4, label="train DataLoader alone")
    ax.bar(x + 0.2, [r["train_from_loader_rows_s"] for r in rows], 0.4, label="training fed by the DataLoader")
    model = rows[0]["model_rows_s"]
    ax.axhline(model, color="black", lw=1, label=f"model on in-memory batches ({model:.0f} rows/s)")
    ax.axhline(TARGET * model, color="red", ls="--", lw=1, label=f"target: {TARGET:g}x the model")
    ax.set(
        xticks=x,
        xticklabels=[f"num_workers={r['num_workers']}" for r in rows],
        ylabel="rows / s",
        yscale="log",
        title=title,
    )
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(parser)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=30, help="loader batches timed per setting and round")
    parser.add_argument(
        "--steps", type=int, default=6, help="training steps timed per round (model, and fed by each loader)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the in-process loader and keep its top functions"
    )
    add_run_args(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    result = measure(args)
    rows = result["rows"]
    for r in rows:
        print(
            f"num_workers={r['num_workers']}: loader {r['loader_rows_s']:.0f} rows/s (first batch "
            f"{r['first_batch_s']:.2f} s), "
            f"model {r['model_rows_s']:.0f} rows/s -> {r['loader_vs_model']:.1f}x (target {TARGET:g}x: "
            f"{'met' if r['target_met'] else 'NOT met'}); "
            f"training fed by it {r['train_from_loader_rows_s']:.0f} rows/s ({r['train_from_loader_vs_model']:.2f}x)",
            flush=True,
        )
    for p in result.get("loader_profile", []):
        print(f"  {p['tottime_s']:>8.3f} s {p['calls']:>7} {p['function']}")
    payload = {
        "benchmark": "input_pipeline",
        "machine": machine(args.device),
        "recipe": args.recipe,
        "preset": args.preset,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "target": f"loader >= {TARGET:g}x model",
        **result,
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write("input-pipeline", payload, args.device, args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        keys = [
            "num_workers",
            "batch_size",
            "loader_rows_s",
            "first_batch_s",
            "model_rows_s",
            "loader_vs_model",
            "target_met",
            "train_from_loader_rows_s",
            "train_from_loader_vs_model",
        ]
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    plot(rows, path.with_suffix(".png"), f"input pipeline ({device_label(args.device)}, batch {args.batch_size})")
    print(f"wrote {path} (+ .csv, .png)")


if __name__ == "__main__":
    main()
