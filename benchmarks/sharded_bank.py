"""Sharded vs replicated memory bank: read / write latency and bytes moved per step at W ranks, and a
cost model checked against them and projected to large catalogs and many ranks.

For each world size W (default 2 and 4) one gloo process group of W CPU processes holds a
``ReplicatedMemoryBank`` and a ``ShardedMemoryBank`` of ``--capacity`` entries, both filled. Each
rank then, ``--repeats`` times, interleaved:

* ``read``: the history IDs of a ``B x L`` block (``--batch`` x ``--length``), drawn from a Zipf-like
  popularity over the catalog (histories repeat popular documents);
* ``write``: ``--write-rows`` fresh vectors (the step's encoded documents, with duplicates).

Latency is the median over repeats of the slowest rank (a collective ends when its last rank does).
Bytes moved are measured, not modelled: every ``torch.distributed`` call the banks make is wrapped
and the bytes a rank sends to *other* ranks are counted. The cost model predicts them from the
distinct IDs (``U``), rows written (``N``), W, dim and dtype, in expectation (IDs spread evenly over
their owners):

* sharded read: ``U (1 - 1/W) (8 + (dim + 1) s)`` plus the count exchanges (the IDs go out, the rows
  and a written flag come back; ``s`` = bytes per element);
* sharded write: ``N_distinct (1 - 1/W) (8 + dim s)`` plus the counts and an all-reduce of the stats;
* replicated read: 0; replicated write: ``(W - 1) n_max (8 + dim s)`` (the all-gather).

Per-rank memory: replicated ``capacity x (dim s + 17)``, sharded ``ceil(capacity / W) x (dim s + 17)``.
The projection table applies the model to ``--project-capacity`` documents (default 1e9) for W up to
64. Writes ``results/sharded-bank-<date>-<cpu|gpu>.json`` + ``.csv`` + ``.png`` (``--device cuda``: NCCL,
one GPU per rank).

    python benchmarks/sharded_bank.py
    python benchmarks/sharded_bank.py --worlds 2 --capacity 10000 --repeats 2   # seconds
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_run_args, machine, save_figure, write  # noqa: E402

ITEMSIZE = {"float32": 4, "bfloat16": 2}
META_BYTES = 17  # written flag (1) + last write step (8) + read counter (8)


# ------------------------------------------------------------------ the cost model
def model_bytes(kind: str, op: str, world: int, dim: int, dtype: str, distinct: float, rows_max: float = 0) -> float:
    """Bytes one rank sends to other ranks for one ``op`` (payload only, without the W-integer counts)."""
    s, off = ITEMSIZE[dtype], 1 - 1 / world
    if kind == "replicated":
        return 0.0 if op == "read" else (world - 1) * rows_max * (8 + dim * s)
    if op == "read":
        return distinct * off * (8 + (dim + 1) * s)
    return distinct * off * (8 + dim * s)


def memory_per_rank(kind: str, world: int, capacity: int, dim: int, dtype: str) -> int:
    rows = capacity if kind == "replicated" else math.ceil(capacity / world)
    return rows * (dim * ITEMSIZE[dtype] + META_BYTES)


# ------------------------------------------------------------------ one world size (spawned ranks)
def _worker(rank: int, world: int, args: argparse.Namespace, tmp: str) -> None:
    import time

    import torch
    import torch.distributed as dist

    from lemur.memory import ReplicatedMemoryBank, ShardedMemoryBank

    torch.set_num_threads(args.threads or 1)
    device = torch.device("cpu")
    if args.device.startswith("cuda"):  # one GPU per rank, NCCL
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    sent = [0]  # bytes this rank sends to other ranks, counted by the wrappers below

    def off_rank(t, splits=None):
        row = t.nbytes // max(len(t), 1) if t.dim() else t.element_size()
        if splits is not None:
            return sum(n for r, n in enumerate(splits) if r != rank) * row
        return t.nbytes * (world - 1) // world

    originals = {name: getattr(dist, name) for name in ("all_to_all_single", "all_gather", "all_reduce")}

    def a2a(out, inp, output_split_sizes=None, input_split_sizes=None, **kw):
        sent[0] += off_rank(inp, input_split_sizes)
        return originals["all_to_all_single"](out, inp, output_split_sizes, input_split_sizes, **kw)

    def gather(outs, t, **kw):
        sent[0] += t.nbytes * (world - 1)
        return originals["all_gather"](outs, t, **kw)

    def reduce(t, **kw):
        sent[0] += t.nbytes * (world - 1) // world * 2  # ring all-reduce
        return originals["all_reduce"](t, **kw)

    banks = {
        "replicated": ReplicatedMemoryBank(args.capacity, args.dim, args.dtype).to(device),
        "sharded": ShardedMemoryBank(args.capacity, args.dim, args.dtype).to(device),
    }
    chunk = 1 << 16
    for start in range(0, args.capacity, chunk * world):  # fill: every entry written once
        lo = min(start + rank * chunk, args.capacity)
        ids = torch.arange(lo, min(start + (rank + 1) * chunk, args.capacity), device=device)  # may be empty
        for bank in banks.values():
            bank.write(ids, torch.randn(len(ids), args.dim, device=device), step=0)
    dist.barrier()

    g = torch.Generator().manual_seed(rank)
    # Zipf-like popularity: document k drawn with weight (k + 1)^-a (inverse-CDF over a sorted catalog)
    a = args.zipf
    u = lambda n: torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    draw = lambda n: ((args.capacity ** (1 - a) - 1) * u(n) + 1) ** (1 / (1 - a)) - 1  # noqa: E731
    rows = {k: [] for k in ("read_s", "write_s", "read_bytes", "write_bytes", "distinct", "write_distinct")}
    results = {kind: {k: [] for k in rows} for kind in banks}
    dist.all_to_all_single, dist.all_gather, dist.all_reduce = a2a, gather, reduce
    for rep in range(args.repeats + 1):
        hist = draw(args.batch * args.length).long().clamp_(0, args.capacity - 1).view(args.batch, args.length)
        fresh = draw(args.write_rows).long().clamp_(0, args.capacity - 1)
        vectors = torch.randn(len(fresh), args.dim, generator=g)
        hist, fresh, vectors = hist.to(device), fresh.to(device), vectors.to(device)
        for kind, bank in banks.items():
            for op, call in (
                ("read", lambda b=bank, h=hist: b.read(h)),
                ("write", lambda b=bank, f=fresh, v=vectors: b.write(f, v, 1)),
            ):
                originals["all_reduce"](torch.zeros(1, device=device))  # line the ranks up (uncounted)
                sent[0] = 0
                start = time.perf_counter()
                call()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = torch.tensor([time.perf_counter() - start], device=device)
                originals["all_reduce"](seconds, op=dist.ReduceOp.MAX)
                if rep:  # the first round warms up
                    results[kind][f"{op}_s"].append(float(seconds))
                    results[kind][f"{op}_bytes"].append(sent[0])
            if rep:
                results[kind]["distinct"].append(len(torch.unique(hist)))
                results[kind]["write_distinct"].append(len(torch.unique(fresh)))
    dist.all_to_all_single, dist.all_gather, dist.all_reduce = (originals[k] for k in originals)
    n_max = torch.tensor([args.write_rows])
    memory = {
        "replicated": sum(getattr(banks["replicated"], n).nbytes for n in banks["replicated"].STATE),
        "sharded": banks["sharded"].local_bytes(),
    }
    Path(tmp, f"rank{rank}.json").write_text(json.dumps({"results": results, "memory": memory, "n_max": int(n_max)}))
    dist.barrier()
    dist.destroy_process_group()


def run_world(world: int, args: argparse.Namespace) -> list[dict]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world, args, tmp), nprocs=world, join=True)
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
    out = []
    for kind in ("replicated", "sharded"):
        per = [r["results"][kind] for r in ranks]
        distinct = statistics.mean(v for p in per for v in p["distinct"])
        write_distinct = statistics.mean(v for p in per for v in p["write_distinct"])
        row = {"world": world, "bank": kind, "memory_per_rank_bytes": ranks[0]["memory"][kind]}
        for op in ("read", "write"):
            row[f"{op}_ms"] = 1e3 * statistics.median(per[0][f"{op}_s"])  # the max over ranks, per repeat
            row[f"{op}_bytes_per_rank"] = statistics.mean(v for p in per for v in p[f"{op}_bytes"])
            uniq = distinct if op == "read" else write_distinct
            row[f"{op}_bytes_model"] = model_bytes(kind, op, world, args.dim, args.dtype, uniq, args.write_rows)
        row["memory_model_bytes"] = memory_per_rank(kind, world, args.capacity, args.dim, args.dtype)
        row["distinct_read_ids_per_rank"] = distinct
        row["distinct_write_ids_per_rank"] = write_distinct
        out.append(row)
    return out


def projection(args: argparse.Namespace, distinct: float, write_distinct: float) -> list[dict]:
    rows = []
    for dtype in ("float32", "bfloat16"):
        for world in (1, 8, 64):
            for kind in ("replicated", "sharded"):
                read = model_bytes(kind, "read", world, args.dim, dtype, distinct) if world > 1 else 0.0
                wr = model_bytes(kind, "write", world, args.dim, dtype, write_distinct, args.write_rows)
                rows.append(
                    {
                        "capacity": args.project_capacity,
                        "dtype": dtype,
                        "world": world,
                        "bank": kind,
                        "memory_per_rank_gib": memory_per_rank(kind, world, args.project_capacity, args.dim, dtype)
                        / 2**30,
                        "read_mib_per_step": read / 2**20,
                        "write_mib_per_step": (wr if world > 1 else 0.0) / 2**20,
                    }
                )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    worlds = sorted({r["world"] for r in rows})
    for kind, marker in (("replicated", "o"), ("sharded", "s")):
        mine = [next(r for r in rows if r["world"] == w and r["bank"] == kind) for w in worlds]
        for ax, key, title in (
            (axes[0], "read_ms", "read latency (ms, slowest rank)"),
            (axes[1], "write_ms", "write latency (ms, slowest rank)"),
        ):
            ax.plot(worlds, [r[key] for r in mine], marker=marker, label=kind)
            ax.set(title=title, xlabel="ranks W", xticks=worlds)
        axes[2].plot(worlds, [r["memory_per_rank_bytes"] / 2**20 for r in mine], marker=marker, label=kind)
    axes[2].set(title="bank memory per rank (MiB)", xlabel="ranks W", xticks=worlds)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=sorted(ITEMSIZE))
    parser.add_argument("--batch", type=int, default=256, help="rows per rank per step")
    parser.add_argument("--length", type=int, default=1000, help="history length")
    parser.add_argument("--write-rows", type=int, default=2048)
    parser.add_argument("--zipf", type=float, default=1.2, help="popularity exponent of the history IDs")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--project-capacity", type=int, default=10**9)
    add_run_args(parser)  # --device cpu (gloo) | cuda (NCCL, one GPU per rank), --precision (unused), --out, --threads
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if torch.cuda.device_count() < max(args.worlds):
            raise SystemExit(
                f"sharded_bank.py --device cuda needs {max(args.worlds)} GPUs (one per rank), "
                f"{torch.cuda.device_count()} found: use --worlds with at most that many, or --device cpu"
            )

    rows = [row for world in args.worlds for row in run_world(world, args)]
    for r in rows:
        for op in ("read", "write"):
            want = r[f"{op}_bytes_model"]
            r[f"{op}_model_ratio"] = r[f"{op}_bytes_per_rank"] / want if want else None
    sharded = [r for r in rows if r["bank"] == "sharded"]
    distinct = statistics.mean(r["distinct_read_ids_per_rank"] for r in sharded)
    write_distinct = statistics.mean(r["distinct_write_ids_per_rank"] for r in sharded)
    payload = {
        "machine": machine(args.device),
        "command": "python benchmarks/sharded_bank.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"}
        | {"backend": "nccl" if args.device.startswith("cuda") else "gloo"},
        "rows": rows,
        "projection": projection(args, distinct, write_distinct),
        "projection_assumes": {
            "distinct_read_ids_per_rank": distinct,
            "distinct_write_ids_per_rank": write_distinct,
            "write_rows_per_rank": args.write_rows,
        },
    }
    path = write("sharded-bank", payload, args.device, args.out)
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, path.with_suffix(".png"))
    for r in rows:
        print(
            f"W={r['world']} {r['bank']:10s} read {r['read_ms']:8.2f} ms {r['read_bytes_per_rank'] / 2**20:7.2f} MiB "
            f"(model x{r['read_model_ratio'] or 0:.3f})  write {r['write_ms']:7.2f} ms "
            f"{r['write_bytes_per_rank'] / 2**20:6.2f} MiB (model x{r['write_model_ratio'] or 0:.3f})  "
            f"memory {r['memory_per_rank_bytes'] / 2**20:8.1f} MiB"
        )
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
