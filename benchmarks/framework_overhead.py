"""What ``lemur fit`` costs per training step over a bare PyTorch loop on the same model and batches.

In one process, ``--rounds`` times (the order alternates each round, so the load of other jobs hits
both), after ``--warmup`` steps that are not timed:

* ``lemur``: ``lemur fit -c recipes/lemur.yaml`` as ``make demo`` runs it (``LemurCLI``, every callback
  of the recipe and of the CLI: memory-bank callback, best/last checkpoints, run summary, progress
  bar, model summary; the MLflow logger, with a SQLite store in a temporary folder), stopped by
  ``--trainer.max_steps``; ``--test_after_fit false``. A small callback records the wall clock at each
  ``on_train_batch_start``: a step is the time between two of them, so everything the loop does
  between two steps counts (logging, callbacks, checkpoint schedule, fetching the next batch);
* ``bare``: the same recipe's model (same class, settings and seed, so the same initial weights),
  its own ``configure_optimizers``, the datamodule's own train DataLoader (same order and seed), and
  by hand ``training_step`` + ``backward`` + gradient clipping as the recipe's trainer sets it
  (``gradient_clip_val``) + ``optimizer.step`` + ``zero_grad``; timed the same way (between the
  starts of consecutive steps, each after its batch is fetched and moved to the device).

A step during which validation ran (``val_check_interval``) is left out of both. The first batches
of both loops are compared (``same_batches``). Reported: the median step of each loop over all rounds,
their ratio lemur / bare (target <= 1.10), per-round medians and ratios, and means (which also carry
the steps that log to MLflow every ``log_every_n_steps`` or write ``last.ckpt``). If the target is
missed (or with ``--profile always``), one more round of each runs under cProfile and the JSON
gets where the time goes: own time per step by package for both loops and the difference, the
top functions, and the framework functions (absent from the bare loop) by cumulative time.
Peak memory: ``torch.cuda.max_memory_allocated`` per loop on GPU, the process's peak RSS on CPU.
Writes ``results/framework-overhead-<date>-<device>.json`` + ``.csv`` + ``.png``.

    python benchmarks/framework_overhead.py                  # small, batch 256, 3 rounds
    python benchmarks/framework_overhead.py --threads 1 --steps 30 --warmup 5 --rounds 5 --profile always
    python benchmarks/framework_overhead.py --quick          # tiny, batch 16: a smoke run
    python benchmarks/framework_overhead.py --device cuda --precision bf16-mixed --steps 100 --warmup 20
"""

from __future__ import annotations

import argparse
import csv
import gc
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    add_recipe_args,
    add_run_args,
    device_label,
    ensure_data,
    machine,
    save_figure,
    set_threads,
    write,
)

TARGET = 1.10
LOOPS = ("lemur", "bare")
QUICK = {"preset": "tiny", "batch_size": 16, "steps": 6, "warmup": 2, "rounds": 2}
"""``--quick``: the settings it stands for (flags given explicitly win)."""


class StepClock:
    """Wall clock at the start of every step; a step is the time to the next start.

    ``tick`` is called when a step starts (its batch already fetched and on the device). With a
    ``profiler``, the profiler runs exactly over the timed steps. On CUDA every tick synchronizes, so a
    step's kernels count in that step in both loops alike."""

    def __init__(self, device: str, warmup: int, steps: int, profiler=None) -> None:
        self.sync = device.startswith("cuda")
        self.warmup, self.steps, self.profiler = warmup, steps, profiler
        self.starts: list[float] = []
        self.marked: dict[int, str] = {}  # step index -> why it is left out
        self.first_batches: list[list[int]] = []
        self.rows: int | None = None

    def tick(self, batch: dict) -> None:
        if self.sync:
            import torch

            torch.cuda.synchronize()
        now = time.perf_counter()
        n = len(self.starts)
        if self.profiler is not None:
            if n == self.warmup:
                self.profiler.enable()
            elif n == self.warmup + self.steps:
                self.profiler.disable()
        self.starts.append(now)
        if n < 3:  # which rows: the first batches of both loops must match
            self.first_batches.append(batch["doc_index"][:8].tolist())
            self.rows = int(batch["label"].shape[0])

    def mark(self, why: str) -> None:
        """Leave the running step out (validation ran inside it)."""
        if self.starts:
            self.marked[len(self.starts) - 1] = why

    def timed(self) -> list[float]:
        """Seconds of the steps after the warm-up, without the marked ones."""
        return [
            b - a
            for i, (a, b) in enumerate(zip(self.starts, self.starts[1:]))
            if self.warmup <= i < self.warmup + self.steps and i not in self.marked
        ]


def timer_callback(clock: StepClock):
    import lightning as L

    class StepTimer(L.Callback):
        """Feeds ``clock`` from inside ``trainer.fit``."""

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            clock.tick(batch)

        def on_validation_start(self, trainer, pl_module):
            if not trainer.sanity_checking:
                clock.mark("validation")

    return StepTimer()


def recipe_args(args, root: Path) -> list[str]:
    out = [x for r in args.recipe for x in ("-c", str(r))] + ["--data.init_args.root", str(root)]
    if args.batch_size:
        out += ["--data.init_args.batch_size", str(args.batch_size)]
    if args.num_workers is not None:
        out += ["--data.init_args.num_workers", str(args.num_workers)]
    return out


def peak_memory(device: str) -> dict:
    import torch

    if device.startswith("cuda"):
        return {"peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1), "memory": "cuda allocated"}
    return {
        "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "memory": "process peak RSS (both loops)",
    }


def reset_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_lemur(args, root: Path, tmp: Path, profiler=None) -> dict:
    """``lemur fit`` (the real CLI, in this process) for warmup + steps + 1 optimizer steps."""
    from lemur.trainer_cli import LemurCLI

    clock = StepClock(args.device, args.warmup, args.steps, profiler)
    callback = timer_callback(clock)

    class TimedCLI(LemurCLI):
        def before_fit(self) -> None:
            super().before_fit()
            self.trainer.callbacks.append(callback)

    argv = [
        "fit",
        *recipe_args(args, root),
        "--trainer.accelerator",
        "gpu" if args.device.startswith("cuda") else "cpu",
        "--trainer.devices",
        f"[{args.device.split(':')[1]}]" if args.device.startswith("cuda:") else "1",
        "--trainer.precision",
        args.precision,
        "--trainer.max_steps",
        str(args.warmup + args.steps + 1),
        "--trainer.default_root_dir",
        str(tmp / "runs"),
        "--trainer.logger.init_args.tracking_uri",
        f"sqlite:///{tmp / 'mlruns.db'}",
        "--trainer.logger.init_args.artifact_location",
        str(tmp / "mlartifacts"),
        "--test_after_fit",
        "false",
    ]
    reset_memory(args.device)
    saved = sys.argv
    sys.argv = ["lemur"]
    try:
        cli = TimedCLI(args=argv)
    finally:
        sys.argv = saved
    trainer = cli.trainer
    logger = trainer.logger
    setup = {
        "callbacks": [type(c).__name__ for c in trainer.callbacks if c is not callback],
        "logger": type(logger).__name__ if logger is not None else None,
        "mlflow_failure": getattr(logger, "failure", None),
        "log_every_n_steps": trainer.log_every_n_steps,
        "gradient_clip_val": trainer.gradient_clip_val,
        "precision": trainer.precision,
        "global_step": trainer.global_step,
    }
    result = {"clock": clock, "setup": setup, **peak_memory(args.device)}
    del cli, trainer, logger
    return result


def run_bare(args, root: Path, clip: float | None, profiler=None) -> dict:
    """The same model, optimizer(s) and batches, trained by hand."""
    import torch

    from lemur.trainer_cli import LemurCLI

    saved = sys.argv
    sys.argv = ["lemur"]
    try:  # as common.build: the recipe's model and data through the real CLI, no training
        cli = LemurCLI(args=[*recipe_args(args, root), "--trainer.logger", "false"], run=False)
    finally:
        sys.argv = saved
    model, dm = cli.model, cli.datamodule
    clip = cli.trainer.gradient_clip_val if clip is None else clip
    algorithm = str(cli.trainer.gradient_clip_algorithm or "norm")
    del cli
    reset_memory(args.device)
    dm.setup("fit")
    device = torch.device(args.device)
    model.to(device).train()
    conf = model.configure_optimizers()
    scheduler, interval = None, "epoch"
    if isinstance(conf, dict):
        opt, scheduler = conf["optimizer"], conf.get("lr_scheduler")
        if isinstance(scheduler, dict):
            interval, scheduler = scheduler.get("interval", "epoch"), scheduler["scheduler"]
    elif isinstance(conf, torch.optim.Optimizer):
        opt = conf
    else:
        raise SystemExit(f"configure_optimizers returned {type(conf).__name__}: one optimizer is supported here")
    params = [p for group in opt.param_groups for p in group["params"]]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    clock = StepClock(args.device, args.warmup, args.steps, profiler)
    batches = iter(dm.train_dataloader())
    for i in range(args.warmup + args.steps + 1):
        try:
            batch = next(batches)
        except StopIteration:
            break
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        clock.tick(batch)
        with autocast:
            loss = model.training_step(batch, i)
        if loss is not None:  # nonfinite_loss: skip
            loss.backward()
            if clip:
                if algorithm == "value":
                    torch.nn.utils.clip_grad_value_(params, clip)
                else:
                    torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            if scheduler is not None and interval == "step":
                scheduler.step()
        opt.zero_grad(set_to_none=True)
    del batches  # stops the loader's workers
    setup = {"gradient_clip_val": clip, "gradient_clip_algorithm": algorithm, "optimizer": type(opt).__name__}
    result = {"clock": clock, "setup": setup, **peak_memory(args.device)}
    del model, dm, opt
    return result


def one_round(args, root: Path, tmp: Path, order: tuple[str, ...], profilers: dict | None = None) -> dict:
    profilers = profilers or {}
    out = {}
    for loop in order:
        start = time.perf_counter()
        if loop == "lemur":
            out[loop] = run_lemur(args, root, tmp, profilers.get(loop))
        else:
            clip = out["lemur"]["setup"]["gradient_clip_val"] if "lemur" in out else None
            out[loop] = run_bare(args, root, clip, profilers.get(loop))
        out[loop]["wall_s"] = time.perf_counter() - start
        gc.collect()
    return out


# ---------------------------------------------------------------------------- profiles
def _group(path: str, name: str) -> str:
    p = path.replace("\\", "/")
    if p == "~":  # C functions: cProfile keeps no file
        if "torch" in name or "_C." in name:
            return "torch (C++ ops, autograd)"
        if "sqlite" in name:
            return "mlflow / sqlite"
        return "python built-ins"
    if "/lemur/callbacks/" in p or p.endswith(("lemur/tracking.py", "lemur/trainer_cli.py", "lemur/run_record.py")):
        return "lemur callbacks / CLI / tracking"
    if "/lemur/" in p:
        return "lemur model + data"
    for key, group in (
        ("/lightning_fabric/", "lightning"),
        ("/lightning/", "lightning"),
        ("/lightning_utilities/", "lightning"),
        ("/torchmetrics/", "lightning"),
        ("/mlflow/", "mlflow / sqlite"),
        ("/sqlalchemy/", "mlflow / sqlite"),
        ("/alembic/", "mlflow / sqlite"),
        ("/tqdm/", "tqdm progress bar"),
        ("/torch/", "torch (python)"),
        ("/numpy/", "numpy"),
    ):
        if key in p:
            return group
    return "python stdlib / other"


def _short(key: tuple) -> str:
    path, line, name = key
    if path == "~":
        return name
    parts = Path(path).parts
    for anchor in ("site-packages", "lemur", "benchmarks"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            parts = parts[i + 1 :] if anchor == "site-packages" else parts[i:]
            break
    return f"{'/'.join(parts)}:{line}({name})"


def summarize_profiles(profilers: dict, steps: dict, top: int = 12) -> dict:
    """Own time per step by package for both loops, their difference, the top functions of the lemur loop,
    and the functions only the lemur loop calls (its framework work) by cumulative time per step."""
    import pstats

    stats = {loop: pstats.Stats(p).stats for loop, p in profilers.items()}
    per_step = {loop: max(steps[loop], 1) for loop in stats}
    groups: dict[str, dict[str, float]] = {}
    totals = {}
    for loop, entries in stats.items():
        totals[loop] = sum(tt for (_, _, tt, _, _) in entries.values()) / per_step[loop] * 1e3
        for key, (_, _, tt, _, _) in entries.items():
            g = groups.setdefault(_group(key[0], key[2]), dict.fromkeys(stats, 0.0))
            g[loop] += tt / per_step[loop] * 1e3
    by_group = sorted(
        (
            {
                "group": name,
                **{f"{loop}_ms_per_step": round(v, 3) for loop, v in ms.items()},
                "extra_ms_per_step": round(ms.get("lemur", 0.0) - ms.get("bare", 0.0), 3),
            }
            for name, ms in groups.items()
        ),
        key=lambda r: -r["extra_ms_per_step"],
    )
    lemur = stats.get("lemur", {})
    n = per_step.get("lemur", 1)
    top_own = [
        {
            "function": _short(key),
            "own_ms_per_step": round(tt / n * 1e3, 3),
            "cum_ms_per_step": round(ct / n * 1e3, 3),
            "calls_per_step": round(nc / n, 2),
        }
        for key, (_, nc, tt, ct, _) in sorted(lemur.items(), key=lambda kv: -kv[1][2])[:top]
    ]
    bare = stats.get("bare", {})
    step_ms = totals.get("lemur", 0.0)
    # the work both loops do (training_step, backward, optimizer step, clipping, the next batch): the shared
    # functions that take >= 0.5% of a bare step; what calls them in the lemur loop is a driver (its cumulative
    # time holds the model's work), not framework work of its own
    bare_ms = totals.get("bare", 0.0)
    shared = [k for k, v in bare.items() if k in lemur and v[3] / per_step["bare"] * 1e3 >= 0.005 * bare_ms]
    drivers, todo = set(), list(shared)
    while todo:
        for caller in lemur.get(todo.pop(), (0, 0, 0, 0, {}))[4]:
            if caller not in drivers:
                drivers.add(caller)
                todo.append(caller)
    mine = sorted((k for k in lemur if k not in bare and k not in drivers and k[0] != "~"), key=lambda k: -lemur[k][3])
    framework = []
    for key in mine[:top]:
        _, nc, _, ct, callers = lemur[key]
        framework.append(
            {
                "function": _short(key),
                "cum_ms_per_step": round(ct / n * 1e3, 3),
                "share_of_step": round(ct / n * 1e3 / step_ms, 4) if step_ms else None,
                "calls_per_step": round(nc / n, 2),
                "group": _group(key[0], key[2]),
                "called_from": _short(max(callers, key=lambda c: callers[c][3])) if callers else None,
            }
        )
    extra_own = sorted(
        (
            {
                "function": _short(key),
                "extra_own_ms_per_step": round((v[2] / n - bare.get(key, (0, 0, 0.0))[2] / per_step["bare"]) * 1e3, 3)
                if "bare" in per_step
                else round(v[2] / n * 1e3, 3),
                "lemur_calls_per_step": round(v[1] / n, 2),
                "bare_calls_per_step": round(bare[key][1] / per_step["bare"], 2) if key in bare else 0,
                "group": _group(key[0], key[2]),
            }
            for key, v in lemur.items()
        ),
        key=lambda r: -r["extra_own_ms_per_step"],
    )
    return {
        "profiled_ms_per_step": {loop: round(v, 2) for loop, v in totals.items()},
        "note": "cProfile over the timed steps of one extra round per loop; its own overhead inflates Python-heavy "
        "code (the framework's), so read the shares, not the absolute times. by_group / top_extra_own_time: own time "
        "(excluding callees) per step, lemur minus bare; framework_only_cumulative: functions the bare loop never "
        "calls and that do not call the shared work (training_step, backward, optimizer step), by cumulative time",
        "by_group": by_group,
        "top_own_time_lemur": top_own,
        "top_extra_own_time": extra_own[:top],
        "framework_only_cumulative": framework,
    }


# ---------------------------------------------------------------------------- output
def plot(rounds: list[dict], ratio: float | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"lemur": "tab:blue", "bare": "tab:orange"}
    for r in rounds:
        for loop in LOOPS:
            ts = r[f"{loop}_steps_s"]
            left.plot(
                range(len(ts)),
                [t * 1e3 for t in ts],
                marker=".",
                color=colors[loop],
                alpha=0.4 + 0.6 * (r["round"] + 1) / len(rounds),
                label=f"{loop}, round {r['round']}",
            )
    left.set(xlabel="timed step", ylabel="ms / step", title=title)
    left.legend(fontsize=7, ncol=2)
    xs = [r["round"] for r in rounds]
    right.plot(xs, [r["ratio"] for r in rounds], marker="o", label="lemur / bare, per round")
    right.axhline(TARGET, color="red", ls="--", lw=0.8, label=f"target {TARGET}")
    if ratio:
        right.axhline(ratio, color="tab:blue", ls=":", label=f"all steps: {ratio:.3f}")
    right.axhline(1.0, color="grey", lw=0.5)
    right.set(xlabel="round", ylabel="median step ratio", title="framework overhead", xticks=xs)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(parser)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--num-workers", type=int, default=None, help="train DataLoader workers; default: the recipe's")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per loop and round")
    parser.add_argument("--warmup", type=int, default=3, help="steps per loop and round before the timed ones")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (lemur, bare), the order alternating")
    parser.add_argument(
        "--profile",
        default="auto",
        choices=["auto", "always", "never"],
        help="cProfile one more round of each loop: auto = when the target is missed",
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke settings: {QUICK}")
    add_run_args(parser)
    if "--quick" in sys.argv[1:]:
        parser.set_defaults(**QUICK)
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("need --steps >= 1, --warmup >= 0, --rounds >= 1")
    set_threads(args.threads)
    warnings.filterwarnings("ignore")
    root = ensure_data(args.preset)
    rounds, errors, setups, memory = [], [], {}, {}
    steps_all: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    same_batches = None
    with tempfile.TemporaryDirectory(prefix="lemur-overhead-") as tmp:
        for r in range(args.rounds):
            order = LOOPS if r % 2 == 0 else LOOPS[::-1]
            try:
                out = one_round(args, root, Path(tmp), order)
            except Exception as err:  # noqa: BLE001 - record, try the next round
                errors.append({"round": r, "error": f"{type(err).__name__}: {err}"[:600]})
                print(f"round {r} failed: {errors[-1]['error']}", flush=True)
                continue
            row = {"round": r, "order": "/".join(order)}
            for loop in LOOPS:
                ts = out[loop]["clock"].timed()
                steps_all[loop] += ts
                setups.setdefault(loop, out[loop]["setup"])
                memory[loop] = max(memory.get(loop, 0.0), out[loop]["peak_mib"])
                memory["memory"] = out[loop]["memory"]
                row[f"{loop}_median_s"] = statistics.median(ts) if ts else None
                row[f"{loop}_mean_s"] = statistics.fmean(ts) if ts else None
                row[f"{loop}_steps_timed"] = len(ts)
                row[f"{loop}_left_out"] = sorted(set(out[loop]["clock"].marked.values()))
                row[f"{loop}_wall_s"] = round(out[loop]["wall_s"], 1)
                row[f"{loop}_steps_s"] = [round(t, 5) for t in ts]
            row["batch_rows"] = out["lemur"]["clock"].rows
            match = out["lemur"]["clock"].first_batches == out["bare"]["clock"].first_batches
            same_batches = match if same_batches is None else same_batches and match
            ok = row["lemur_median_s"] and row["bare_median_s"]
            row["ratio"] = row["lemur_median_s"] / row["bare_median_s"] if ok else None
            rounds.append(row)
            print(
                f"round {r} ({row['order']}): lemur {row['lemur_median_s'] * 1e3:.1f} ms, "
                f"bare {row['bare_median_s'] * 1e3:.1f} ms, ratio {row['ratio']:.3f} "
                f"({row['lemur_steps_timed']} / {row['bare_steps_timed']} steps; same batches: {match})"
                if ok
                else f"round {r}: no timed steps ({row['lemur_steps_timed']} / {row['bare_steps_timed']})",
                flush=True,
            )
        medians = {loop: statistics.median(ts) if ts else None for loop, ts in steps_all.items()}
        ratio = medians["lemur"] / medians["bare"] if all(medians.values()) else None
        round_ratios = [r["ratio"] for r in rounds if r["ratio"]]
        profile = None
        if args.profile == "always" or (args.profile == "auto" and ratio is not None and ratio > TARGET):
            import cProfile

            print("profiling one more round of each loop (cProfile over the timed steps)", flush=True)
            profilers = {loop: cProfile.Profile() for loop in LOOPS}
            try:
                out = one_round(args, root, Path(tmp), LOOPS, profilers)
                profile = summarize_profiles(profilers, {loop: len(out[loop]["clock"].timed()) for loop in LOOPS})
            except Exception as err:  # noqa: BLE001
                errors.append({"round": "profile", "error": f"{type(err).__name__}: {err}"[:600]})
                print(f"profile round failed: {errors[-1]['error']}", flush=True)
    batch_rows = next((r["batch_rows"] for r in rounds if r.get("batch_rows")), None)
    targets = {
        f"lemur / bare median step (target <= {TARGET})": round(ratio, 4) if ratio else None,
        "median of per-round ratios": round(statistics.median(round_ratios), 4) if round_ratios else None,
        "met": bool(ratio) and ratio <= TARGET,
    }
    payload = {
        "benchmark": "framework_overhead",
        "machine": machine(args.device),
        "recipe": args.recipe,
        "preset": args.preset,
        "precision": args.precision,
        "batch_size": batch_rows,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds_asked": args.rounds,
        "ratio": round(ratio, 4) if ratio else None,
        "target": TARGET,
        "met": targets["met"],
        "lemur_median_s": medians["lemur"],
        "bare_median_s": medians["bare"],
        "lemur_mean_s": statistics.fmean(steps_all["lemur"]) if steps_all["lemur"] else None,
        "bare_mean_s": statistics.fmean(steps_all["bare"]) if steps_all["bare"] else None,
        "lemur_rows_s": batch_rows / medians["lemur"] if batch_rows and medians["lemur"] else None,
        "bare_rows_s": batch_rows / medians["bare"] if batch_rows and medians["bare"] else None,
        "steps_timed": {loop: len(ts) for loop, ts in steps_all.items()},
        "same_batches": same_batches,
        "peak_memory": memory,
        "targets": targets,
        "rounds": rounds,
        "setup": setups,
        "profile": profile,
        "errors": errors,
        "notes": "a step = wall time between the starts of consecutive training steps (fetching the next batch, "
        "every hook, logging and callback included); medians over every timed step of every round; steps "
        "holding a validation run left out of both loops; one process, the loop order alternating per round. "
        "Work the demo does only every N steps (MLflow logging every log_every_n_steps, last.ckpt every 200 steps, "
        "checkpoints after validation) shows in the means, not in the medians",
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write("framework-overhead", payload, args.device, args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        keys = ["round", "order", "batch_rows", "ratio"] + [
            f"{loop}_{k}" for loop in LOOPS for k in ("median_s", "mean_s", "steps_timed", "wall_s")
        ]
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rounds)
        if ratio:
            w.writerow(
                {
                    "round": "all",
                    "ratio": ratio,
                    "batch_rows": batch_rows,
                    "lemur_median_s": medians["lemur"],
                    "bare_median_s": medians["bare"],
                    "lemur_mean_s": payload["lemur_mean_s"],
                    "bare_mean_s": payload["bare_mean_s"],
                    "lemur_steps_timed": len(steps_all["lemur"]),
                    "bare_steps_timed": len(steps_all["bare"]),
                }
            )
    if rounds:
        plot(
            rounds,
            ratio,
            path.with_suffix(".png"),
            f"lemur fit vs bare loop ({device_label(args.device)}, {args.precision}, batch {batch_rows})",
        )
    if ratio:
        print(
            f"median step: lemur {medians['lemur'] * 1e3:.1f} ms, bare {medians['bare'] * 1e3:.1f} ms; "
            f"ratio {ratio:.3f} (target <= {TARGET}: {'met' if targets['met'] else 'NOT met'}); "
            f"per round: {', '.join(f'{x:.3f}' for x in round_ratios)}"
        )
    if profile:
        print("where the extra time goes (own time per step, lemur - bare):")
        for g in profile["by_group"][:6]:
            print(f"  {g['group']:<34} {g['extra_ms_per_step']:+9.2f} ms")
        print("functions with the most extra own time per step (lemur - bare):")
        for fn in profile["top_extra_own_time"][:6]:
            print(f"  {fn['extra_own_ms_per_step']:+9.2f} ms  {fn['function']}")
        print("framework-only functions (cumulative per step):")
        for fn in profile["framework_only_cumulative"][:8]:
            print(f"  {fn['cum_ms_per_step']:9.2f} ms  {fn['function']}  <- {fn['called_from']}")
    print(f"wrote {path} (+ .csv, .png)")
    if errors or not ratio:
        raise SystemExit(f"{len(errors)} round(s) failed (see the JSON)" if errors else "no timed steps")


if __name__ == "__main__":
    main()
