"""``lemur run SUITE.yaml``: several recipes x seeds -> one MLflow experiment + a comparison report.

A suite file (see ``recipes/suites/``) names a base recipe, the variants (each a list of override
recipes, optional extra CLI arguments, or several *stages* such as pretrain -> rank) and the seeds::

    name: table5_ablations             # MLflow experiment "lemur-<name>" unless `experiment` is set
    reference: full                    # the row every delta is relative to
    seeds: [0, 1, 2]
    base: [recipes/lemur.yaml]         # prepended to every run's recipes
    args: []                           # appended to every run's command line
    variants:
      - name: full
      - name: no_sqdc
        recipes: [recipes/ablations/no_sqdc.yaml]
      - name: two_stage
        stages:
          - name: pretrain
            recipes: [recipes/two_stage/stage1_pretrain.yaml]
          - name: rank
            recipes: [recipes/two_stage/stage2_frozen.yaml]
            checkpoint_from: pretrain  # --model.init_args.encoder_checkpoint <pretrain's last.ckpt>
      - name: end_to_end
        stages:
          - name: joint
            checkpoint_from: two_stage/pretrain  # another variant's stage, same seed (run once, shared)

Every run is a separate ``lemur fit`` process (a failing run cannot take the suite down, and its
memory is returned), with its own folder ``<out>/<variant>/seed<k>/<stage>/`` holding the command,
the log, the checkpoints and ``metrics.json`` (written by RunSummary). A run whose
``metrics.json`` says ``tested`` is finished and is skipped when the suite is started again; an
interrupted run resumes from its ``last.ckpt`` into the same MLflow run. Each run also saves its scored
test rows (``test_predictions.parquet``), from which the report (Markdown, CSV, PNG, written to
``<out>/report.*`` and logged to MLflow as a run of its own) gives every variant's difference from the
reference row with a paired-bootstrap interval (``lemur.metrics.bootstrap``).

The suite machinery (ordering, resume, lineage, aggregation) is lemur's own: no library runs a
list of LightningCLI invocations with resume and a cross-run report.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

METRICS = ("auc", "qauc", "gauc")
DELTA_METRICS = ("auc", "qauc", "gauc", "auc_new")  # paired-bootstrap intervals vs the reference row
PREDICTIONS_FILE = "test_predictions.parquet"  # each run's scored test rows (RunSummary.predictions_file)


class SuiteError(ValueError):
    """A bad suite file; the message names the file, the key and the value."""


# ---------------------------------------------------------------------------- suite file
@dataclass
class Stage:
    name: str
    recipes: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    checkpoint_from: str | None = None
    """An earlier stage whose ``last.ckpt`` is passed as ``checkpoint_arg``: ``<stage>`` of this variant, or
    ``<variant>/<stage>`` of an earlier variant (the same seed's run, shared instead of trained twice)."""
    checkpoint_arg: str = "--model.init_args.encoder_checkpoint"


@dataclass
class Variant:
    name: str
    stages: list[Stage]
    description: str = ""


@dataclass
class Suite:
    path: Path
    name: str
    experiment: str
    reference: str | None
    seeds: list[int]
    base: list[str]
    args: list[str]
    variants: list[Variant]
    description: str = ""
    flops: bool = False
    """Count FLOPs per training row of each variant for the report (``lemur.profiling``)."""

    def runs(self) -> list[tuple[Variant, int, Stage]]:
        return [(v, seed, st) for seed in self.seeds for v in self.variants for st in v.stages]


@dataclass
class _VariantFile:
    """A variant as a suite file writes it: one stage (``recipes``/``args``) or several (``stages``)."""

    name: str
    description: str = ""
    recipes: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)


@dataclass
class _SuiteFile:
    """A suite file as written; :func:`load_suite` checks it and resolves it into a :class:`Suite`."""

    variants: list[dict]
    """Each parsed as a ``_VariantFile`` on its own, so that an error names its variant."""
    name: str | None = None
    description: str = ""
    experiment: str | None = None
    reference: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    base: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    flops: bool = False


def _parse(cls: type, data: dict, where: str):
    """``data`` as a ``cls`` by jsonargparse's typed parsing: an unknown or missing key, or a value of the wrong
    type, fails with jsonargparse's message naming the key and the value (its innermost cause, without the
    levels it nests around it)."""
    from jsonargparse import ArgumentError, ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls)
    try:
        cfg = parser.instantiate(parser.parse_object(data))
    except ArgumentError as err:
        inner = err
        while inner.__cause__ is not None:
            inner = inner.__cause__
        first = str(err).splitlines()[0]
        raise SuiteError(f"{where}: {first}" + ("" if str(inner) in first else f" {inner}")) from None
    return cls(**{f.name: cfg[f.name] for f in fields(cls)})


def _repository_root(path: Path) -> Path | None:
    """The nearest folder above a suite file that holds ``recipes/``: where its recipe paths start."""
    return next((p for p in path.resolve().parents if (p / "recipes").is_dir()), None)


def _in_repository(path: str) -> str:
    """``path`` as given if it exists, else the same path in the repository lemur was installed from (an
    editable install of a clone), so ``lemur run recipes/suites/X.yaml`` also works outside the clone."""
    if Path(path).exists() or Path(path).is_absolute():
        return path
    repo = Path(__file__).resolve().parents[1]
    return str(repo / path) if (repo / "recipes").is_dir() and (repo / path).exists() else path


def load_suite(path: str | Path, root: Path | None = None) -> Suite:
    """Read and check a suite file. A recipe path is taken relative to ``root`` (default: the working
    directory), else to the suite's repository root (then made absolute), so ``lemur run`` works anywhere."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SuiteError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping with keys name, seeds, base, variants")
    spec = _parse(_SuiteFile, data, str(path))
    if not spec.seeds or not spec.variants:
        raise SuiteError(f"{path}: key '{'seeds' if not spec.seeds else 'variants'}': expected a non-empty list")
    variants = []
    for i, raw in enumerate(spec.variants):
        where = f"{path}: variant {raw['name']!r}" if isinstance(raw.get("name"), str) else f"{path}: variants[{i}]"
        v = _parse(_VariantFile, raw, where)
        if v.stages and (v.recipes or v.args):
            raise SuiteError(f"{where}: give either 'stages' or 'recipes'/'args', not both")
        stages = v.stages or [Stage("fit", v.recipes, v.args)]
        for j, st in enumerate(stages):
            earlier = [s.name for s in stages[:j]] + [f"{o.name}/{s.name}" for o in variants for s in o.stages]
            if st.checkpoint_from is not None and st.checkpoint_from not in earlier:
                raise SuiteError(
                    f"{where}, stage {st.name!r}: key 'checkpoint_from': {st.checkpoint_from!r} is not an "
                    f"earlier stage of this variant or <variant>/<stage> of an earlier variant ({earlier})"
                )
        if len({s.name for s in stages}) != len(stages):
            raise SuiteError(f"{where}: stage names must be unique, got {[s.name for s in stages]}")
        variants.append(Variant(v.name, stages, v.description))
    names = [v.name for v in variants]
    if len(set(names)) != len(names) or not all(names):
        raise SuiteError(f"{path}: variant names must be unique and non-empty, got {names}")
    reference = data.get("reference", names[0])  # absent: the first variant; `reference: null`: none
    if reference is not None and reference not in names:
        raise SuiteError(f"{path}: key 'reference': {reference!r} is not one of the variants {names}")
    root, repo = (Path.cwd() if root is None else root), _repository_root(path)

    def resolve(recipe: str) -> str:
        if (root / recipe).is_file():
            return recipe
        if repo is not None and (repo / recipe).is_file():
            return str(repo / recipe)
        raise SuiteError(f"{path}: recipe {recipe!r} not found (paths are relative to {root} or {repo})")

    base = [resolve(r) for r in spec.base]
    for v in variants:
        for st in v.stages:
            st.recipes = [resolve(r) for r in st.recipes]
    name = spec.name or path.stem
    return Suite(
        path,
        name,
        spec.experiment or f"lemur-{name}",
        reference,
        spec.seeds,
        base,
        spec.args,
        variants,
        spec.description,
        spec.flops,
    )


# ---------------------------------------------------------------------------- running
@dataclass
class Options:
    out: Path
    extra_configs: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    max_steps: int | None = None
    verbose: bool = False
    fail_fast: bool = False
    dry_run: bool = False
    jobs: int = 1
    """(variant, seed) chains run at once (``--jobs``)."""
    progress_every_s: float = 60.0
    """Seconds between two progress lines of a running run (0 = none); not with ``verbose``."""


def run_dir(out: Path, variant: Variant, seed: int, stage: Stage) -> Path:
    return out / variant.name / f"seed{seed}" / stage.name


def read_record(folder: Path) -> dict:
    try:
        return json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def build_command(suite: Suite, opts: Options, variant: Variant, seed: int, stage: Stage) -> list[str]:
    """The ``lemur fit`` command line of one run (``python -m lemur.cli`` so the same interpreter runs it)."""
    folder = run_dir(opts.out, variant, seed, stage)
    cmd = [sys.executable, "-m", "lemur.cli", "fit"]
    for recipe in suite.base + stage.recipes + opts.extra_configs:
        cmd += ["-c", recipe]
    cmd += suite.args + stage.args
    if opts.max_steps is not None:
        cmd += [
            "--trainer.max_steps",
            str(opts.max_steps),
            "--trainer.max_epochs",
            "1",
            "--trainer.val_check_interval",
            str(opts.max_steps),
            "--trainer.limit_val_batches",
            "2",
            "--trainer.limit_test_batches",
            "2",
        ]
    tags = {"suite": suite.name, "variant": variant.name, "seed": str(seed), "stage": stage.name}
    if stage.checkpoint_from is not None:
        parent = upstream_dir(opts.out, variant, seed, stage)
        checkpoint = parent / "checkpoints" / "last.ckpt"
        cmd += [stage.checkpoint_arg, str(checkpoint)]
        tags["lineage.upstream_checkpoint"] = str(checkpoint)
        upstream = read_record(parent).get("run_id")
        if upstream:
            tags["lineage.upstream_run_id"] = upstream
            tags["lineage.upstream_stage"] = stage.checkpoint_from
    run_name = f"{variant.name}/seed{seed}" + (f"/{stage.name}" if len(variant.stages) > 1 else "")
    cmd += [
        "--seed_everything",
        str(seed),
        "--trainer.logger.init_args.experiment_name",
        suite.experiment,
        "--trainer.logger.init_args.run_name",
        run_name,
        "--trainer.logger.init_args.tags",
        json.dumps(tags),
        "--checkpoint.dirpath",
        str(folder / "checkpoints"),
        "--summary.metrics_file",
        str(folder / "metrics.json"),
        "--summary.predictions_file",
        str(folder / PREDICTIONS_FILE),
    ]
    cmd += opts.extra_args
    # An interrupted run resumes: same MLflow run, Lightning restores from its last checkpoint.
    record = read_record(folder)
    if record.get("run_id"):
        cmd += ["--trainer.logger.init_args.run_id", record["run_id"]]
    last = folder / "checkpoints" / "last.ckpt"
    if last.exists():
        cmd += ["--ckpt_path", str(last)]
    return cmd


def _fmt_seconds(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def progress_line(record: dict, elapsed: float) -> str | None:
    """``step 320/862 (37%), 3m10s, ~5m20s left`` from a running run's ``metrics.json`` progress, or None."""
    progress = record.get("progress")
    if not progress:
        return None
    step, total = progress.get("step", 0), progress.get("total_steps")
    text = (
        f"step {step}" + (f"/{total} ({min(step / total, 0.99):.0%})" if total else "") + f", {_fmt_seconds(elapsed)}"
    )
    train_s = progress.get("train_seconds") or 0.0
    if total and step > 0 and train_s > 0:
        text += f", ~{_fmt_seconds(max(total - step, 0) * train_s / step)} of training left"
    return text


def _report_progress(label: str, folder: Path, start: float, done: threading.Event, every: float, say) -> None:
    """Print where a run is every ``every`` seconds until ``done`` (its output goes to log.txt only)."""
    while not done.wait(every):
        line = progress_line(read_record(folder), time.perf_counter() - start)
        if line:
            say(f"{label}: {line}")


def upstream_dir(out: Path, variant: Variant, seed: int, stage: Stage) -> Path:
    """The run folder of the stage whose checkpoint ``stage`` starts from (``checkpoint_from``); by name, so
    it is found when ``--only`` leaves that variant out (its finished run is then reused)."""
    owner, _, name = stage.checkpoint_from.rpartition("/")
    return out / (owner or variant.name) / f"seed{seed}" / name


def _chains(suite: Suite) -> list[list[tuple[int, Variant, int, Stage]]]:
    """The runs grouped by (variant, seed), stages in order, numbered in the sequential order. A variant that
    starts from another variant's stage joins that variant's chain (after it), so the run it needs is done."""
    joins = {v.name: v.name for v in suite.variants}
    for v in suite.variants:  # earlier variants first, so a chain of joins resolves in one pass
        for st in v.stages:
            if st.checkpoint_from and "/" in st.checkpoint_from:
                owner = st.checkpoint_from.rpartition("/")[0]
                joins[v.name] = joins.get(owner, owner)
    chains: dict[tuple[str, int], list[tuple[int, Variant, int, Stage]]] = {}
    for i, (variant, seed, stage) in enumerate(suite.runs(), 1):
        chains.setdefault((joins[variant.name], seed), []).append((i, variant, seed, stage))
    return list(chains.values())


def _ensure_experiment(name: str) -> None:
    """Create the suite's MLflow experiment up front, so concurrent first runs do not race to create it."""
    try:
        from mlflow.tracking import MlflowClient

        from lemur.cli import tracking_uri

        client = MlflowClient(tracking_uri())
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name)
    except Exception as err:  # each run's logger tries again (and survives MLflow being unavailable)
        print(
            f"warning: could not create MLflow experiment {name!r} up front ({type(err).__name__}: {err})",
            file=sys.stderr,
        )


def run_suite(suite: Suite, opts: Options) -> dict:
    """Run every unfinished (variant, seed, stage); return ``{"done", "skipped", "failed"}`` lists.

    With ``opts.jobs`` > 1, that many (variant, seed) chains run at once (the stages of one chain
    always in order), each ``lemur fit`` with ``cpu_count // jobs`` torch threads unless
    ``OMP_NUM_THREADS`` is set. Runs never share a folder, so resume works as with one job.
    """
    runs = suite.runs()
    status = {"done": [], "skipped": [], "failed": []}
    opts.out.mkdir(parents=True, exist_ok=True)
    width = len(str(len(runs)))
    lock, stop = threading.Lock(), threading.Event()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if opts.jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // opts.jobs))

    def say(text: str) -> None:
        with lock:
            print(text, flush=True)

    def record(outcome: str, folder: Path) -> None:
        with lock:
            status[outcome].append(str(folder))

    def run_chain(chain: list[tuple[int, Variant, int, Stage]]) -> None:
        failed = False
        for i, variant, seed, stage in chain:
            if stop.is_set():
                return
            folder = run_dir(opts.out, variant, seed, stage)
            label = f"[{i:>{width}}/{len(runs)}] {variant.name} seed={seed}" + (
                f" stage={stage.name}" if len(variant.stages) > 1 else ""
            )
            if read_record(folder).get("status") == "tested":
                say(f"{label}: finished earlier, skipped ({folder})")
                record("skipped", folder)
                continue
            if failed:
                say(f"{label}: skipped, an earlier stage failed")
                record("failed", folder)
                continue
            cmd = build_command(suite, opts, variant, seed, stage)
            if opts.dry_run:
                say(f"{label}: {shlex.join(cmd)}")
                continue
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "command.txt").write_text(shlex.join(cmd) + "\n")
            resumed = " (resuming)" if "--ckpt_path" in cmd or "--trainer.logger.init_args.run_id" in cmd else ""
            say(f"{label}: running{resumed}, log {folder / 'log.txt'}")
            start = time.perf_counter()
            done = threading.Event()
            if not opts.verbose and opts.progress_every_s > 0:
                threading.Thread(
                    target=_report_progress, args=(label, folder, start, done, opts.progress_every_s, say), daemon=True
                ).start()
            with open(folder / "log.txt", "a") as log:
                proc = subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
                )
                for line in proc.stdout:  # text mode: a progress bar's \r updates arrive as lines too
                    log.write(line)
                    log.flush()
                    if opts.verbose:
                        sys.stdout.write(line)
                code = proc.wait()
            done.set()
            took = _fmt_seconds(time.perf_counter() - start)
            result = read_record(folder)
            if code != 0 or result.get("status") != "tested":
                tail = (folder / "log.txt").read_text().splitlines()[-15:]
                say(
                    f"{label}: FAILED (exit {code}) after {took}; last lines of {folder / 'log.txt'}:\n    "
                    + "\n    ".join(tail)
                )
                record("failed", folder)
                failed = True
                if opts.fail_fast:
                    stop.set()
                    return
                continue
            shown = ", ".join(
                f"{m.upper()} {result['metrics'][f'test/{m}']:.4f}"
                for m in METRICS
                if f"test/{m}" in result.get("metrics", {})
            )
            say(f"{label}: done in {took}: {shown}")
            record("done", folder)

    chains = _chains(suite)
    if opts.jobs > 1 and not opts.dry_run:
        _ensure_experiment(suite.experiment)
        with ThreadPoolExecutor(opts.jobs) as pool:
            list(pool.map(run_chain, chains))
    else:
        for chain in chains:
            run_chain(chain)
            if stop.is_set():
                break
    return status


# ---------------------------------------------------------------------------- FLOPs
def measure_flops(suite: Suite, opts: Options, variant: Variant, steps: int = 3) -> dict:
    """FLOPs per row of one training step (forward + backward) of the variant's last stage,
    counted by ``lemur.profiling.count_flops_per_row`` on a real training batch (its bank marked
    written for the batch's documents, so p/q sampling takes effect); cached in
    ``<out>/<variant>/flops.json``. Averaged over ``steps`` steps: sampling draws random rows."""
    cache = opts.out / variant.name / "flops.json"
    if cache.exists():
        return json.loads(cache.read_text())
    import torch

    from lemur.profiling import count_flops_per_row, count_params
    from lemur.trainer_cli import LemurCLI

    stage = variant.stages[-1]
    args = [a for r in suite.base + stage.recipes + opts.extra_configs for a in ("-c", r)] + suite.args + stage.args
    args += opts.extra_args + [
        "--trainer.logger",
        "false",
        "--data.init_args.num_workers",
        "0",
        "--seed_everything",
        "0",
    ]
    saved = sys.argv
    sys.argv = ["lemur"]  # LightningCLI warns about an argv beside args=
    try:
        cli = LemurCLI(args=args, run=False)
    finally:
        sys.argv = saved
    torch.manual_seed(0)
    cli.datamodule.setup("fit")
    batch = next(iter(cli.datamodule.train_dataloader()))
    model = cli.model.train()
    counts = count_flops_per_row(model, batch, steps=steps)
    result = {
        "flops_per_row": counts["total"],
        "forward_per_row": counts["forward"],
        "batch_rows": counts["rows"],
        "steps": steps,
        "params": count_params(model),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=2))
    return result


# ---------------------------------------------------------------------------- report
def collect(suite: Suite, out: Path) -> list[dict]:
    """One row per variant: per-seed test metrics of its last stage, aggregated (mean, sample std)."""
    rows = []
    for variant in suite.variants:
        final = variant.stages[-1]
        records = {seed: read_record(run_dir(out, variant, seed, final)) for seed in suite.seeds}
        records = {s: r for s, r in records.items() if r.get("status") == "tested"}
        row = {"variant": variant.name, "runs": len(records), "seeds": sorted(records)}
        for m in METRICS:
            values = [r["metrics"][f"test/{m}"] for r in records.values() if f"test/{m}" in r.get("metrics", {})]
            row[m] = values
            row[f"{m}_mean"] = statistics.fmean(values) if values else math.nan
            row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        new = [r["metrics"]["test/auc_new"] for r in records.values() if "test/auc_new" in r.get("metrics", {})]
        row["auc_new_mean"] = (
            statistics.fmean(new) if new else math.nan
        )  # AUC on rows whose document is new on the test day
        row["auc_new_std"] = statistics.stdev(new) if len(new) > 1 else math.nan
        for kind in ("total", "trainable"):
            counts = [r.get("params", {}).get(kind) for r in records.values()]
            row["params" if kind == "total" else "trainable_params"] = (
                counts[0] if counts and counts[0] is not None else None
            )
        rates = [r.get("phases", {}).get("train", {}).get("rows_per_s") for r in records.values()]
        rates = [x for x in rates if x]
        row["train_rows_per_s"] = statistics.fmean(rates) if rates else math.nan
        row["run_ids"] = [r.get("run_id") for r in records.values()]
        flops = out / variant.name / "flops.json"
        row["mflops_per_row"] = json.loads(flops.read_text())["flops_per_row"] / 1e6 if flops.exists() else math.nan
        rows.append(row)
    ref = next((r for r in rows if r["variant"] == suite.reference), None)
    for row in rows:
        for m in METRICS:
            base = ref[f"{m}_mean"] if ref else math.nan
            row[f"{m}_delta_pct"] = (
                (row[f"{m}_mean"] - base) / base * 100 if base and not math.isnan(base) else math.nan
            )
    _paired_deltas(suite, out, rows)
    return rows


def _paired_deltas(suite: Suite, out: Path, rows: list[dict]) -> None:
    """``<metric>_delta`` / ``_delta_ci_low`` / ``_delta_ci_high`` of every row vs the reference row: the
    absolute difference of the seed-averaged test metrics with a 95% paired bootstrap interval over the same
    test rows (sessions for QAUC, users for GAUC, rows for AUC), pooled over the seeds both rows finished."""
    from lemur.metrics.bootstrap import NAN_DELTA, paired_delta, read_predictions

    variants = {v.name: v for v in suite.variants}

    def predictions(name: str) -> dict[int, dict]:
        found = {}
        for seed in rows_by_name[name]["seeds"]:
            path = run_dir(out, variants[name], seed, variants[name].stages[-1]) / PREDICTIONS_FILE
            try:
                found[seed] = read_predictions(path)
            except FileNotFoundError:
                continue
        return found

    rows_by_name = {r["variant"]: r for r in rows}
    ref = predictions(suite.reference) if suite.reference in rows_by_name else {}
    for row in rows:
        mine = predictions(row["variant"]) if ref and row["variant"] != suite.reference else {}
        seeds = sorted(set(mine) & set(ref))
        for m in DELTA_METRICS:
            delta = NAN_DELTA
            if seeds:
                try:
                    delta = paired_delta([mine[s] for s in seeds], [ref[s] for s in seeds], m)
                except ValueError as err:  # runs on different test rows: no paired comparison
                    print(f"warning: {row['variant']} vs {suite.reference}: {err}", file=sys.stderr)
            row[f"{m}_delta"], row[f"{m}_delta_ci_low"], row[f"{m}_delta_ci_high"] = delta.value, delta.low, delta.high
        row["delta_seeds"] = seeds


STREAM_METRICS = ("val/auc", "val/qauc", "val/auc_new")


def collect_streaming(suite: Suite, out: Path) -> dict[str, dict[int, dict[str, float]]]:
    """Per variant, per validation day: the mean over seeds of the streaming runs' next-day metrics
    (``streaming.json`` written by ``StreamingReport``; empty when the suite does not stream)."""
    per_variant = {}
    for variant in suite.variants:
        days: dict[int, dict[str, list[float]]] = {}
        for seed in suite.seeds:
            path = run_dir(out, variant, seed, variant.stages[-1]) / "streaming.json"
            if not path.exists():
                continue
            for row in json.loads(path.read_text()):
                for m in STREAM_METRICS:
                    if m in row:
                        days.setdefault(int(row["val_day"]), {}).setdefault(m, []).append(row[m])
        if days:
            per_variant[variant.name] = {
                d: {m: statistics.fmean(v) for m, v in ms.items()} for d, ms in sorted(days.items())
            }
    return per_variant


def render_streaming(stream: dict[str, dict[int, dict[str, float]]]) -> str:
    days = sorted({d for v in stream.values() for d in v})
    names = list(stream)
    lines = [
        "",
        "## Day by day (streaming)",
        "",
        "Next-day validation of each streamed day, mean over the seeds that finished: AUC / AUC on rows whose "
        "document is new that day (`val/auc_new`).",
        "",
        "| validation day | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for d in days:
        cells = []
        for n in names:
            row = stream[n].get(d, {})
            auc, new = row.get("val/auc", math.nan), row.get("val/auc_new", math.nan)
            cells.append("n/a" if math.isnan(auc) else f"{auc:.4f} / " + ("n/a" if math.isnan(new) else f"{new:.4f}"))
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot_streaming(suite: Suite, stream: dict[str, dict[int, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, m in zip(axes, STREAM_METRICS):
        for name, days in stream.items():
            xs = [d for d, row in days.items() if m in row]
            ax.plot(xs, [days[d][m] for d in xs], marker="o", label=name)
        ax.set(title=f"next-day {m}", xlabel="validation day")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f"suite {suite.name}: streaming, mean over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.4f} ± {std:.4f}" if not math.isnan(std) else f"{mean:.4f}"


def _ci(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "n/a"
    text = f"{value:+.4f} [{low:+.4f}, {high:+.4f}]"
    return f"**{text}**" if low > 0 or high < 0 else text


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.2f}%"


def data_root(out: Path) -> str | None:
    """The dataset folder the suite's runs trained on (``--data.init_args.root`` of a run's command), if given."""
    for command in sorted(out.glob("*/seed*/*/command.txt")):
        args = shlex.split(command.read_text())
        if "--data.init_args.root" in args[:-1]:
            return args[args.index("--data.init_args.root") + 1]
    return None


def render_markdown(suite: Suite, rows: list[dict], machine: str, data: str | None = None) -> str:
    lines = [f"# Suite `{suite.name}`", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += [
        (f"Data: `{data}`. " if data else "")
        + f"Suite file: `{suite.path}`; MLflow experiment `{suite.experiment}`; seeds {suite.seeds}; "
        f"reference row `{suite.reference}`; {machine}.",
        "Test-day metrics of each run's best checkpoint (of the last stage); mean ± sample std over seeds; "
        "Δ = relative change of the mean vs the reference row (as the paper reports); "
        "AUC new docs: AUC on the test rows whose document was published on the test day (never seen in training); "
        "train rows/s of the last stage, comparable only within one report (same machine, same session)"
        + (
            "; train MFLOPs/row: forward + backward of one training step, counted with torch's FlopCounterMode "
            "on one real batch (lemur.profiling)"
            if any(not math.isnan(r["mflops_per_row"]) for r in rows)
            else ""
        )
        + ".",
        "",
    ]
    show_flops = any(not math.isnan(r["mflops_per_row"]) for r in rows)
    head = (
        "| variant | runs | AUC | ΔAUC | QAUC | ΔQAUC | GAUC | ΔGAUC | AUC new docs | params (trainable) |"
        + (" train MFLOPs/row |" if show_flops else "")
        + " train rows/s |"
    )
    lines += [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for r in rows:
        flops = (
            ("n/a" if math.isnan(r["mflops_per_row"]) else f"{r['mflops_per_row']:.1f}") + " | " if show_flops else ""
        )
        params = (
            f"{r['params'] / 1e6:.2f}M ({r['trainable_params'] / 1e6:.2f}M)"
            if r["params"] and r["trainable_params"] is not None
            else "n/a"
        )
        rate = "n/a" if math.isnan(r["train_rows_per_s"]) else f"{r['train_rows_per_s']:.0f}"
        lines.append(
            f"| {r['variant']} | {r['runs']} | {_pm(r['auc_mean'], r['auc_std'])} | {_pct(r['auc_delta_pct'])} | "
            f"{_pm(r['qauc_mean'], r['qauc_std'])} | {_pct(r['qauc_delta_pct'])} | "
            f"{_pm(r['gauc_mean'], r['gauc_std'])} | {_pct(r['gauc_delta_pct'])} | "
            f"{_pm(r['auc_new_mean'], r['auc_new_std'])} | "
            f"{params} | {flops}{rate} |"
        )
    if any(not math.isnan(r.get("qauc_delta", math.nan)) for r in rows):
        lines += [
            "",
            f"Difference vs `{suite.reference}` (absolute; 95% paired bootstrap interval over the same test rows: "
            "sessions for QAUC, users for GAUC, rows for AUC and AUC new docs; seeds pooled). An interval "
            "that excludes 0 is a difference beyond noise (**bold**).",
            "",
            "| variant | seeds | ΔAUC | ΔQAUC | ΔGAUC | ΔAUC new docs |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            if r["variant"] == suite.reference:
                continue
            cells = [_ci(r[f"{m}_delta"], r[f"{m}_delta_ci_low"], r[f"{m}_delta_ci_high"]) for m in DELTA_METRICS]
            seeds = " ".join(map(str, r.get("delta_seeds", []))) or "n/a"
            lines.append(f"| {r['variant']} | {seeds} | " + " | ".join(cells) + " |")
    variants = {v.name: v for v in suite.variants}
    lines += ["", "Recipes per variant (after the base " + ", ".join(f"`{b}`" for b in suite.base) + "):", ""]
    for r in rows:
        v = variants[r["variant"]]
        parts = []
        for st in v.stages:
            text = (
                " ".join([f"`-c {x}`" for x in st.recipes] + [f"`{shlex.join(st.args)}`"] * bool(st.args))
                or "(base only)"
            )
            if st.checkpoint_from:
                text += f", starting from the `{st.checkpoint_from}` checkpoint"
            parts.append((f"{st.name}: " if len(v.stages) > 1 else "") + text)
        lines.append(f"- **{r['variant']}**: " + "; ".join(parts) + (f" -- {v.description}" if v.description else ""))
    return "\n".join(lines) + "\n"


def write_report(suite: Suite, out: Path, prefix: Path | None = None, log_to_mlflow: bool = True) -> dict[str, Path]:
    """Write ``<prefix>.md/.csv/.png`` (default ``<out>/report``) and log them to MLflow."""
    import platform

    import pyarrow as pa
    import pyarrow.csv as pacsv

    rows = collect(suite, out)
    prefix = Path(prefix) if prefix is not None else out / "report"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}"
    paths = {"md": prefix.with_suffix(".md"), "csv": prefix.with_suffix(".csv"), "png": prefix.with_suffix(".png")}
    stream = collect_streaming(suite, out)
    report = render_markdown(suite, rows, machine, data_root(out))
    paths["md"].write_text(report + (render_streaming(stream) if stream else ""))
    columns = (
        ["variant", "runs"]
        + [f"{m}_{k}" for m in METRICS for k in ("mean", "std", "delta_pct")]
        + ["auc_new_mean", "auc_new_std"]
        + [f"{m}_{k}" for m in DELTA_METRICS for k in ("delta", "delta_ci_low", "delta_ci_high")]
        + ["params", "trainable_params", "mflops_per_row", "train_rows_per_s"]
    )
    table = pa.table(
        {c: [r[c] for r in rows] for c in columns}
        | {
            "seeds": [" ".join(map(str, r["seeds"])) for r in rows],
            "run_ids": [" ".join(x or "" for x in r["run_ids"]) for r in rows],
        }
    )
    pacsv.write_csv(table, paths["csv"])
    _plot(suite, rows, paths["png"])
    if stream:
        paths["streaming_png"] = prefix.with_name(prefix.name + "-streaming.png")
        _plot_streaming(suite, stream, paths["streaming_png"])
    if log_to_mlflow:
        _log_report(suite, out, paths, rows)
    return paths


def _plot(suite: Suite, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    with_ci = any(not math.isnan(r.get("qauc_delta", math.nan)) for r in rows)
    fig, grid = plt.subplots(
        2 if with_ci else 1, 2, figsize=(max(8, 1.2 * len(rows) + 4), 8.4 if with_ci else 4.2), squeeze=False
    )
    axes = grid[0]
    if with_ci:
        _plot_deltas(suite, rows, grid[1])
    for ax, m in zip(axes, ("auc", "qauc")):
        means = [r[f"{m}_mean"] for r in rows]
        stds = [0.0 if math.isnan(r[f"{m}_std"]) else r[f"{m}_std"] for r in rows]
        colors = ["tab:orange" if n == suite.reference else "tab:blue" for n in names]
        ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color=colors)
        finite = [x for x in means if not math.isnan(x)]
        if finite:
            lo, hi = min(finite), max(finite)
            pad = max(max(stds, default=0) * 2, (hi - lo) * 0.3, 0.002)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right")
        ax.set_title(f"test {m.upper()} (mean ± std over seeds)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"suite {suite.name} (orange: reference {suite.reference})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_deltas(suite: Suite, rows: list[dict], axes) -> None:
    """Each row's difference vs the reference with its 95% interval (the decision the report makes)."""
    others = [r for r in rows if r["variant"] != suite.reference]
    for ax, m in zip(axes, ("qauc", "auc_new")):
        xs = range(len(others))
        values = [r.get(f"{m}_delta", math.nan) for r in others]
        low = [v - r.get(f"{m}_delta_ci_low", math.nan) for v, r in zip(values, others)]
        high = [r.get(f"{m}_delta_ci_high", math.nan) - v for v, r in zip(values, others)]
        colors = [
            "tab:green"
            if r.get(f"{m}_delta_ci_low", 0) > 0
            else "tab:red"
            if r.get(f"{m}_delta_ci_high", 0) < 0
            else "tab:gray"
            for r in others
        ]
        ax.errorbar(xs, values, yerr=[low, high], fmt="none", ecolor="black", capsize=5)
        ax.scatter(xs, values, c=colors, zorder=3)
        ax.axhline(0.0, color="tab:orange", lw=1)
        ax.set_xticks(list(xs), [r["variant"] for r in others], rotation=30, ha="right")
        label = "AUC on new documents" if m == "auc_new" else m.upper()
        ax.set_xlim(-0.5, len(others) - 0.5)
        title = f"Δ test {label} vs {suite.reference}\n(95% paired bootstrap CI; green/red: beyond noise)"
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)


def _log_report(suite: Suite, out: Path, paths: dict[str, Path], rows: list[dict] | None = None) -> None:
    """Log the report as its own MLflow run (tag ``kind=report``), reusing it when the suite is re-run."""
    try:
        from mlflow.tracking import MlflowClient

        from lemur.cli import tracking_uri

        client = MlflowClient(tracking_uri())
        exp = client.get_experiment_by_name(suite.experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(suite.experiment)
        state = out / "report_run.json"
        run_id = json.loads(state.read_text())["run_id"] if state.exists() else None
        if run_id is None:
            run = client.create_run(
                exp_id, run_name=f"{suite.name} report", tags={"suite": suite.name, "kind": "report"}
            )
            run_id = run.info.run_id
            state.write_text(json.dumps({"run_id": run_id}))
        for p in paths.values():
            client.log_artifact(run_id, str(p), artifact_path="report")
        for r in rows or []:  # every number of the report, comparable across suites in MLflow
            for key in [f"{m}_{k}" for m in METRICS for k in ("mean", "std")] + [
                f"{m}_{k}" for m in DELTA_METRICS for k in ("delta", "delta_ci_low", "delta_ci_high")
            ]:
                value = r.get(key, math.nan)
                if isinstance(value, float) and math.isfinite(value):
                    client.log_metric(run_id, f"{r['variant']}/{key}", value)
        client.set_terminated(run_id)
        print(f"report logged to MLflow run {run_id} (experiment '{suite.experiment}', {tracking_uri()})", flush=True)
    except Exception as err:  # the report files exist; MLflow being unavailable must not lose them
        print(
            f"warning: could not log the report to MLflow ({type(err).__name__}: {err}); the files are in {out}",
            file=sys.stderr,
        )


# ---------------------------------------------------------------------------- CLI
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lemur run",
        description="Run a suite of recipes x seeds (recipes/suites/*.yaml) as separate `lemur fit` runs in one MLflow "
        "experiment, resuming a half-done suite, and write a comparison report (Markdown, CSV, PNG).",
        epilog="Any other --key value after the suite is passed to every `lemur fit`, e.g. --trainer.max_epochs 1. "
        "Smoke test of a whole suite: lemur run SUITE --config recipes/tiny.yaml --seeds 0 --out outputs/smoke",
    )
    parser.add_argument("suite", help="suite YAML file, e.g. recipes/suites/table3_two_stage_vs_e2e.yaml")
    parser.add_argument("--out", help="folder for the runs and the report (default: outputs/suites/<suite name>)")
    parser.add_argument("--seeds", help="comma-separated seeds replacing the suite's, e.g. 0 or 0,1")
    parser.add_argument("--only", help="comma-separated variant names to run (the report still covers all)")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="extra override recipe appended to every run, e.g. recipes/tiny.yaml (repeatable)",
    )
    parser.add_argument("--data", help="dataset folder for every run (--data.init_args.root)")
    parser.add_argument(
        "--max-steps", type=int, help="smoke test: stop each run after N steps, validate/test on 2 batches"
    )
    parser.add_argument(
        "--flops",
        action="store_true",
        help="count FLOPs per training row of each variant for the report (the suite's `flops: true` does too)",
    )
    parser.add_argument("--report", help="path prefix of the report files (default: <out>/report)")
    parser.add_argument(
        "--report-only", action="store_true", help="do not run anything; rebuild the report from finished runs"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the command of every unfinished run and exit")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    parser.add_argument(
        "--progress-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="print each running run's step and time left this often (default 60; 0 = never)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run N (variant, seed) chains at once, each with cpu_count/N torch threads unless OMP_NUM_THREADS is set "
        "(2 on a 2-core CPU gives ~1.2x the runs per hour of 1; with GPUs run one suite per GPU instead, "
        "CUDA_VISIBLE_DEVICES=k lemur run ... --seeds k)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="stream every run's output (it always goes to its log.txt)"
    )
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]

    def _number(text: str) -> bool:
        try:
            float(text)
            return True
        except ValueError:
            return False

    bad = [a for a in extra if a.startswith("-") and not a.startswith("--") and not _number(a)]
    if bad:
        parser.error(f"unknown option(s) {bad}; arguments starting with -- after the suite go to every `lemur fit`")
    try:
        suite = load_suite(_in_repository(args.suite))
        if args.seeds:
            try:
                suite.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
            except ValueError:
                parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
        if args.only:
            names = [n.strip() for n in args.only.split(",") if n.strip()]
            unknown = [n for n in names if n not in {v.name for v in suite.variants}]
            if unknown:
                parser.error(f"--only: unknown variant(s) {unknown}; the suite has {[v.name for v in suite.variants]}")
        args.config = [_in_repository(cfg) for cfg in args.config]
        for cfg in args.config:
            if not Path(cfg).is_file():
                parser.error(f"--config: no such file {cfg!r}")
    except SuiteError as err:
        print(f"lemur run: bad suite: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        parser.error(f"--jobs: expected a positive integer, got {args.jobs}")
    out = Path(args.out) if args.out else Path("outputs") / "suites" / suite.name
    extra_args = list(extra) + (["--data.init_args.root", args.data] if args.data else [])
    opts = Options(
        out,
        args.config,
        extra_args,
        args.max_steps,
        args.verbose,
        args.fail_fast,
        args.dry_run,
        args.jobs,
        args.progress_every,
    )
    status = {"done": [], "skipped": [], "failed": []}
    if not args.report_only:
        run_suite_on = suite
        if args.only:
            run_suite_on = Suite(**{**suite.__dict__, "variants": [v for v in suite.variants if v.name in names]})
        total = len(run_suite_on.runs())
        print(
            f"suite {suite.name}: {len(run_suite_on.variants)} variants x {len(suite.seeds)} seeds = {total} runs "
            f"-> {out}",
            flush=True,
        )
        status = run_suite(run_suite_on, opts)
        if args.dry_run:
            return 0
    if (suite.flops or args.flops) and not args.dry_run:
        for variant in suite.variants:
            print(f"counting FLOPs per row of {variant.name} ...", flush=True)
            try:
                measure_flops(suite, opts, variant)
            except Exception as err:  # the report still comes out, with n/a
                print(f"warning: FLOPs of {variant.name} not counted ({type(err).__name__}: {err})", file=sys.stderr)
    paths = write_report(suite, out, Path(args.report) if args.report else None)
    print(paths["md"].read_text())
    print("report: " + ", ".join(str(p) for p in paths.values()))
    if status["failed"]:
        print(f"{len(status['failed'])} run(s) failed: " + ", ".join(status["failed"]), file=sys.stderr)
        return 1
    return 0
