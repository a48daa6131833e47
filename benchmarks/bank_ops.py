"""Memory-bank read / write bandwidth vs a plain ``index_select`` / ``index_copy_`` of the same sizes.

For each catalog size (default 1e5, 1e6, 1e7 entries) x storage dtype (float32, bfloat16), with
``dim`` = 128, one ``ReplicatedMemoryBank`` is filled (every entry written) and then, interleaved
``--repeats`` times (reads) or ``--write-repeats`` times (writes) in the same process on the
same table:

* ``read``: ``bank.read(ids)`` of a ``B x L`` (2,048 x 1,000) block of uniform random IDs, vs
  ``table.index_select(0, ids)`` (the plain gather; target: bank >= 0.7x its GB/s);
* ``read_count``: ``bank.read(ids, count=True)`` (also adds the lookups to the read counters);
* ``write``: ``bank.write(ids, vectors, step)`` of ``B`` rows with duplicate IDs (the contract:
  last occurrence wins, staleness / replaced / new stats), vs ``table.index_copy_(0, ids, vectors)``
  of the same rows (no dedup, no stats).

GB/s = bytes of embedding payload moved (``rows x dim x itemsize``) / median seconds; the ratio is
bank GB/s / plain GB/s. Also written: bytes per entry (table + metadata, measured from the bank's
tensors) and the largest catalog that fits in a given memory. A configuration that does not fit
in the memory available now (``/proc/meminfo`` MemAvailable, or free CUDA memory) is skipped and
listed with the reason. Writes ``results/bank-ops-<date>-<device>.json`` + ``.csv`` + ``.png``.

    python benchmarks/bank_ops.py
    python benchmarks/bank_ops.py --device cuda --catalogs 100000 1000000 10000000 100000000
"""

from __future__ import annotations

import argparse
import csv
import gc
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, Timer, add_threads_arg, device_label, machine, save_figure, set_threads, write  # noqa: E402

MEMORIES_GIB = {"24 GiB host (this machine's RAM)": 24, "80 GiB (H100)": 80, "141 GiB (H200)": 141}
HEADROOM = 1 << 30  # bytes kept free besides what a configuration needs


def available_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return info["MemAvailable"]


def bytes_per_entry(dim: int, dtype: str) -> float:
    """Measured from a small bank's tensors: table row + written flag + last-write step + read counter."""
    from lemur.memory import ReplicatedMemoryBank

    bank = ReplicatedMemoryBank(1000, dim, dtype)
    return sum(getattr(bank, name).nbytes for name in bank.STATE) / bank.capacity


def one_config(catalog: int, dtype: str, args, device) -> dict:
    import torch

    from lemur.memory import ReplicatedMemoryBank

    gen = torch.Generator(device="cpu").manual_seed(0)
    bank = ReplicatedMemoryBank(catalog, args.dim, dtype).to(device)
    bank.table.fill_(0.5)  # touch every page (a fresh zero table reads from the shared zero page)
    bank.written_mask.fill_(True)
    bank.last_write.fill_(0)
    table = bank.table
    item = table.element_size()
    read_ids = torch.randint(0, catalog, (args.batch, args.length), generator=gen).to(device)
    flat = read_ids.reshape(-1)
    uniq = torch.randint(0, catalog, (max(args.batch // 2, 1),), generator=gen)
    write_ids = uniq[torch.randint(0, len(uniq), (args.batch,), generator=gen)].to(device)  # duplicates
    vectors = torch.randn(args.batch, args.dim, generator=gen).to(device, table.dtype)

    reads = {
        ("read", "plain"): lambda: table.index_select(0, flat),
        ("read", "bank"): lambda: bank.read(read_ids),
        ("read_count", "bank"): lambda: bank.read(read_ids, count=True),
    }
    writes = {
        ("write", "plain"): lambda: table.index_copy_(0, write_ids, vectors),
        ("write", "bank"): lambda: bank.write(write_ids, vectors, step=1),
    }
    times = {k: [] for k in (*reads, *writes)}
    for ops, repeats in ((reads, args.repeats), (writes, args.write_repeats)):
        for r in range(args.warmup + repeats):
            for key, fn in ops.items():  # interleaved
                with Timer(args.device) as t:
                    out = fn()
                del out
                if r >= args.warmup:
                    times[key].append(t.seconds)
    rows_moved = {"read": flat.numel(), "read_count": flat.numel(), "write": args.batch}
    result = {
        "catalog": catalog,
        "dtype": dtype,
        "dim": args.dim,
        "batch": args.batch,
        "length": args.length,
        "write_distinct": int(torch.unique(write_ids).numel()),
        "table_gib": table.nbytes / 2**30,
    }
    for (op, impl), ts in times.items():
        s = statistics.median(ts)
        result[f"{op}_{impl}_s"] = s
        result[f"{op}_{impl}_gbps"] = rows_moved[op] * args.dim * item / s / 1e9
    for op in ("read", "read_count", "write"):
        result[f"{op}_ratio"] = round(result[f"{op}_bank_gbps"] / result[f"{op.split('_')[0]}_plain_gbps"], 3)
    return result  # the bank and the tensors go with this frame (the lambdas above close over them)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{r['catalog']:.0e}\n{r['dtype']}" for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, op in zip(axes[:2], ("read", "write")):
        ax.bar(
            x - 0.2,
            [r[f"{op}_plain_gbps"] for r in rows],
            0.4,
            label="plain index_select" if op == "read" else "plain index_copy_",
        )
        ax.bar(x + 0.2, [r[f"{op}_bank_gbps"] for r in rows], 0.4, label=f"ReplicatedMemoryBank.{op}")
        ax.set(xticks=x, xticklabels=labels, ylabel="GB/s (embedding payload)", title=f"{op}: {title}")
        ax.legend(fontsize=8)
    ax = axes[2]
    for op, marker in (("read", "o"), ("read_count", "s"), ("write", "^")):
        ax.plot(x, [r[f"{op}_ratio"] for r in rows], marker=marker, label=op)
    ax.axhline(0.7, color="red", ls="--", lw=0.8, label="read target 0.7x")
    ax.set(xticks=x, xticklabels=labels, ylabel="bank GB/s / plain GB/s", title="bank vs plain", yscale="log")
    ax.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalogs", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"]
    )
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2048, help="B: rows of a batch (read B x L IDs, write B rows)")
    parser.add_argument("--length", type=int, default=1000, help="L: history length read per row")
    parser.add_argument("--repeats", type=int, default=3, help="timed reads of each kind (one B x L read moves ~1 GB)")
    parser.add_argument(
        "--write-repeats", type=int, default=50, help="timed writes of each kind (a write of B rows takes ~1 ms)"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        default="32-true",
        choices=["32-true", "bf16-mixed"],
        help="accepted for a uniform interface; the storage dtypes are --dtypes",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results files")
    add_threads_arg(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows, skipped = [], []
    for dtype in args.dtypes:
        for catalog in args.catalogs:
            item = torch.empty(0, dtype=getattr(torch, dtype)).element_size()
            need = int(
                catalog * bytes_per_entry(args.dim, dtype)
                + 2 * args.batch * args.length * (args.dim * item + 8)
                + HEADROOM
            )
            free = available_bytes(args.device)
            if need > free:
                skipped.append(
                    {
                        "catalog": catalog,
                        "dtype": dtype,
                        "reason": f"needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB available",
                    }
                )
                print(f"skip {catalog:.0e} {dtype}: {skipped[-1]['reason']}", flush=True)
                continue
            r = one_config(catalog, dtype, args, device)
            gc.collect()  # one_config has returned: its bank and tensors are released before the next size
            rows.append(r)
            print(
                f"{catalog:>10.0e} {dtype:>8}: read {r['read_bank_gbps']:.2f} GB/s (plain {r['read_plain_gbps']:.2f}, "
                f"{r['read_ratio']:.2f}x; "
                f"with count {r['read_count_ratio']:.2f}x), write {r['write_bank_gbps']:.3f} GB/s "
                f"(plain {r['write_plain_gbps']:.3f}, {r['write_ratio']:.2f}x)",
                flush=True,
            )
    per_entry = {dtype: bytes_per_entry(args.dim, dtype) for dtype in args.dtypes}
    capacity = {
        mem: {dtype: int(gib * 2**30 // b) for dtype, b in per_entry.items()} for mem, gib in MEMORIES_GIB.items()
    }
    read_ratios = [r["read_ratio"] for r in rows]
    targets = {
        "bank read / plain index_select (target >= 0.7), worst config": min(read_ratios) if read_ratios else None,
        "met": bool(read_ratios) and min(read_ratios) >= 0.7,
    }
    payload = {
        "benchmark": "bank_ops",
        "machine": machine(args.device),
        "dim": args.dim,
        "batch": args.batch,
        "length": args.length,
        "repeats": args.repeats,
        "write_repeats": args.write_repeats,
        "rows": rows,
        "skipped": skipped,
        "bytes_per_entry": per_entry,
        "largest_catalog_bank_only": capacity,
        "targets": targets,
        "notes": "GB/s counts the embedding payload (rows x dim x itemsize); medians of interleaved repeats; "
        "largest catalog = memory / bytes per entry for the bank alone (no model, activations or headroom)",
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write("bank-ops", payload, args.device, args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        keys = (
            ["catalog", "dtype", "dim", "batch", "length", "write_distinct", "table_gib"]
            + [
                f"{op}_{impl}_{unit}"
                for op in ("read", "read_count", "write")
                for impl in ("plain", "bank")
                for unit in ("s", "gbps")
                if not (op == "read_count" and impl == "plain")
            ]
            + ["read_ratio", "read_count_ratio", "write_ratio"]
        )
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    if rows:
        plot(
            rows,
            path.with_suffix(".png"),
            f"{device_label(args.device)}, B={args.batch}, L={args.length}, dim={args.dim}",
        )
    print("bytes per entry:", {k: round(v, 1) for k, v in per_entry.items()})
    for mem, by in capacity.items():
        print(f"largest catalog in {mem}: " + ", ".join(f"{d} {n / 1e6:.0f}M" for d, n in by.items()))
    print(targets)
    print(f"wrote {path} (+ .csv, .png)")


if __name__ == "__main__":
    main()
