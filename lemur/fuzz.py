"""The bad-input sweep behind ``make fuzz``: generated corruptions of a valid dataset and recipe.

``python -m lemur.fuzz [--quick] [--only TEXT] [--out table.md]`` starts from LEMUR-Synth ``tiny``
and a small version of ``recipes/lemur.yaml``, and generates cases:

* **data**: for every column of ``docs.parquet`` / ``events.parquet``, each mutation that applies
  (drop it, a null, cast to string / float with NaN / binary, an extreme or negative value, a huge
  or empty text, a broken image), plus table-level and semantic ones (empty table, not Parquet,
  missing file, duplicate and unknown IDs, sessions split across users or times, timestamps going
  back across days, a single day, image files missing, truncated or not images);
* **recipe**: for every setting of the recipe, a misspelt key, a value of the wrong type and, for
  numbers, a negative one; unknown class paths; components of incompatible sizes.

Each case runs what ``lemur fit`` runs, in this process: validation, then one training step
(``max_steps 1``). Its outcome is one of

* ``rejected``: ``lemur`` exits non-zero with a message that names the culprit (the file and the
  column for data; the key or the value for a recipe) and no traceback;
* ``skipped``: training ran and the bad part was skipped and counted (``data_issues``: images
  without a usable image, text values cut);
* ``accepted``: training ran normally (the "corruption" is valid input, e.g. empty strings);
* ``crash``: anything else, including an error whose message does not name the culprit.

The sweep prints a table (and writes it as Markdown with ``--out``); the goal is 0 crashes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"

# A small, fast version of recipes/lemur.yaml (every component; one training step per case).
SMALL_RECIPE = {
    "trainer": {
        "max_steps": 1,
        "max_epochs": 1,
        "limit_val_batches": 0,
        "limit_test_batches": 0,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "log_every_n_steps": 1,
        "callbacks": [{"class_path": "lemur.callbacks.MemoryBankCallback", "init_args": {"plot": False}}],
    },
    "model": {
        "init_args": {
            "features": {
                "token_dim": 16,
                "user_buckets": 500,
                "doc_buckets": 500,
                "cat_buckets": 100,
                "num_cat": 1,
                "num_dense": 1,
            },
            "query_encoder": {
                "class_path": "lemur.encoders.TransformerTextEncoder",
                "init_args": {
                    "num_layers": 1,
                    "hidden_dim": 32,
                    "num_heads": 2,
                    "ffn_dim": 64,
                    "num_types": 1,
                    "max_len": 16,
                    "out_dim": 32,
                    "dropout": 0.0,
                },
            },
            "doc_encoder": {
                "class_path": "lemur.encoders.DocumentEncoder",
                "init_args": {
                    "out_dim": 32,
                    "modalities": {
                        "text": {
                            "class_path": "lemur.encoders.TransformerTextEncoder",
                            "init_args": {
                                "num_layers": 1,
                                "hidden_dim": 32,
                                "num_heads": 2,
                                "ffn_dim": 64,
                                "num_types": 5,
                                "max_len": 80,
                                "out_dim": 32,
                                "dropout": 0.0,
                            },
                        }
                    },
                },
            },
            "memory_bank": {
                "class_path": "lemur.memory.ReplicatedMemoryBank",
                "init_args": {"capacity": 400, "dim": 32},
            },
            "similarity": {"class_path": "lemur.sequence.CosineSimilarityFeatures", "init_args": {"max_len": 8}},
            "backbone": {
                "class_path": "lemur.ranking.MLPBackbone",
                "init_args": {"hidden_dims": [32], "dropout": 0.0, "dot_interaction": True},
            },
        }
    },
    "data": {"init_args": {"batch_size": 32, "num_workers": 0, "history": {"short_len": 4, "long_len": 16}}},
    "checkpoint": {"last_every_n_train_steps": 0},
}
IMAGES = {"data": {"init_args": {"image_size": 16}}}

OUTCOMES = ("rejected", "skipped", "accepted", "crash")


@dataclass
class Case:
    """One corrupted input: ``make(workdir)`` returns the ``lemur fit`` arguments that exercise it."""

    kind: str  # "data" | "recipe"
    name: str
    make: Callable[[Path], list[str]]
    culprit: tuple[str, ...]  # words a clear message must contain (any one of each group is enough)


@dataclass
class Result:
    case: Case
    outcome: str
    detail: str
    seconds: float
    counts: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- the base dataset
class Base:
    """LEMUR-Synth tiny, generated once; cases write corrupted copies of its tables."""

    def __init__(self, root: Path) -> None:
        from lemur.data.synth import PRESETS, generate

        self.root = root / "base"
        generate(PRESETS["tiny"], self.root, progress=False)
        self.docs = pq.read_table(self.root / "docs.parquet")
        self.events = pq.read_table(self.root / "events.parquet")

    def write(
        self,
        folder: Path,
        docs: pa.Table | None = None,
        events: pa.Table | None = None,
        docs_bytes: bytes | None = None,
        events_bytes: bytes | None = None,
    ) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, table, raw in (
            ("docs.parquet", docs if docs is not None else self.docs, docs_bytes),
            ("events.parquet", events if events is not None else self.events, events_bytes),
        ):
            if raw is not None:
                (folder / name).write_bytes(raw)
            elif table is not None:
                pq.write_table(table, folder / name)
        return folder


def _set(table: pa.Table, name: str, values, type=None) -> pa.Table:
    array = pa.array(values, type=type) if type is not None else pa.array(values)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


def _with_value(table: pa.Table, name: str, row: int, value, type=None) -> pa.Table:
    values = table[name].to_pylist()
    values[row] = value
    return _set(table, name, values, type if type is not None else table.schema.field(name).type)


def _png(size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _data_cases(base: Base) -> list[Case]:
    cases: list[Case] = []

    def add(name: str, culprit: tuple[str, ...], images: bool = False, **tables) -> None:
        def make(work: Path, tables=tables) -> list[str]:
            root = base.write(work / "data", **{k: (v() if callable(v) else v) for k, v in tables.items()})
            return ["--data.init_args.root", str(root)] + (["--data.init_args.image_size", "16"] if images else [])

        cases.append(Case("data", name, make, culprit))

    row = 7
    for file, attr in (("docs.parquet", "docs"), ("events.parquet", "events")):
        table: pa.Table = getattr(base, attr)
        for name in table.column_names:
            dtype = table.schema.field(name).type
            culprit = (file, name)
            if name.startswith(
                ("cat_", "dense_")
            ):  # the model's feature count must match the columns: either may be named
                culprit = (f"{file}|num_cat|num_dense", f"{name}|num_cat|num_dense")
            images = name == "image"
            add(f"{file}: drop {name}", culprit, images=images, **{attr: table.drop_columns([name])})
            add(
                f"{file}: null in {name}, row {row}",
                culprit,
                images=images,
                **{attr: _with_value(table, name, row, None)},
            )
            if not pa.types.is_string(dtype):
                add(
                    f"{file}: {name} as strings",
                    culprit,
                    images=images,
                    **{
                        attr: _set(
                            table, name, [None if v is None else str(v) for v in table[name].to_pylist()], pa.string()
                        )
                    },
                )
            if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
                values = table[name].to_numpy(zero_copy_only=False).astype(np.float64)
                values[row] = np.nan
                add(f"{file}: {name} as floats with NaN", culprit, **{attr: _set(table, name, values, pa.float64())})
                for label, value in (("negative", -3), ("int64 max", np.iinfo(np.int64).max)):
                    if pa.types.is_integer(dtype):
                        add(
                            f"{file}: {name} {label} at row {row}",
                            culprit,
                            **{attr: _with_value(table, name, row, int(value), pa.int64())},
                        )
                if pa.types.is_floating(dtype):
                    for label, value in (("inf", np.inf), ("1e300", 1e300)):
                        add(
                            f"{file}: {name} {label} at row {row}",
                            culprit,
                            **{attr: _with_value(table, name, row, float(value))},
                        )
            if pa.types.is_string(dtype):
                add(
                    f"{file}: {name} huge (2 MB) at row {row}",
                    culprit,
                    **{attr: _with_value(table, name, row, "lorem ipsum " * 175_000)},
                )
                add(
                    f"{file}: {name} all empty strings",
                    culprit,
                    **{attr: _set(table, name, [""] * table.num_rows, pa.string())},
                )
                add(
                    f"{file}: {name} as binary",
                    culprit,
                    **{
                        attr: _set(
                            table,
                            name,
                            [None if v is None else v.encode() for v in table[name].to_pylist()],
                            pa.binary(),
                        )
                    },
                )
            if images:
                some = table[name].to_pylist()
                add(
                    f"{file}: every 3rd image undecodable",
                    culprit,
                    images=True,
                    docs=_set(
                        table, name, [b"\x89PNG broken" if i % 3 == 0 else v for i, v in enumerate(some)], pa.binary()
                    ),
                )
                add(
                    f"{file}: every 3rd image a truncated PNG",
                    culprit,
                    images=True,
                    docs=_set(
                        table, name, [_png(32)[:40] if i % 3 == 0 else v for i, v in enumerate(some)], pa.binary()
                    ),
                )
                add(
                    f"{file}: every image undecodable",
                    culprit,
                    images=True,
                    docs=_set(table, name, [b"not an image"] * table.num_rows, pa.binary()),
                )
        add(f"{file}: empty table", (file,), **{attr: table.slice(0, 0)})
        add(f"{file}: not a Parquet file", (file,), **{f"{attr}_bytes": b"doc_id,title\n1,x\n"})
        add(f"{file}: zero bytes", (file,), **{f"{attr}_bytes": b""})
        add(
            f"{file}: extra unknown column",
            (file,),
            **{attr: table.append_column("zzz_unknown", pa.array(["x"] * table.num_rows))},
        )

    docs, events = base.docs, base.events
    ids = docs["doc_id"].to_pylist()
    add("docs.parquet: duplicate doc_id", ("docs.parquet", "doc_id"), docs=_with_value(docs, "doc_id", 11, ids[3]))
    add("docs.parquet: no content columns", ("docs.parquet", "content"), docs=docs.select(["doc_id"]))
    add(
        "events.parquet: doc_id not in docs",
        ("events.parquet", "doc_id"),
        events=_with_value(events, "doc_id", row, 10**12),
    )
    add("events.parquet: label 2", ("events.parquet", "label"), events=_with_value(events, "label", row, 2))
    session = events["session_id"].to_pylist()
    same = next(i for i in range(1, len(session)) if session[i] == session[i - 1])
    add(
        "events.parquet: session with two users",
        ("events.parquet", "user_id"),
        events=_with_value(events, "user_id", same, events["user_id"][same].as_py() + 1),
    )
    add(
        "events.parquet: session with two timestamps",
        ("events.parquet", "timestamp"),
        events=_with_value(events, "timestamp", same, events["timestamp"][same].as_py() + 1),
    )
    last = int(np.argmax(events["day"].to_numpy()))
    add(
        "events.parquet: timestamps go back across days",
        ("events.parquet", "timestamp"),
        events=_set(
            events,
            "timestamp",
            np.where(np.asarray(session) == session[last], 0, events["timestamp"].to_numpy()),
            pa.int64(),
        ),
    )
    add(
        "events.parquet: a single day (no training split)",
        ("events.parquet", "day"),
        events=_set(events, "day", np.zeros(events.num_rows, np.int32), pa.int32()),
    )
    add(
        "events.parquet: rows shuffled",
        ("events.parquet",),
        events=events.take(np.random.default_rng(0).permutation(events.num_rows)),
    )
    add(
        "events.parquet: label all 0",
        ("events.parquet", "label"),
        events=_set(events, "label", np.zeros(events.num_rows, np.int8), pa.int8()),
    )
    add(
        "events.parquet: empty queries",
        ("events.parquet", "query"),
        events=_set(events, "query", [""] * events.num_rows, pa.string()),
    )

    # image files referenced by image_path
    def with_paths(kind: str) -> Callable[[Path], list[str]]:
        def make(work: Path) -> list[str]:
            root = work / "data"
            (root / "img").mkdir(parents=True, exist_ok=True)
            paths = []
            for i in range(docs.num_rows):
                path = f"img/{i}.png"
                if kind == "missing" and i % 5 == 0:
                    pass  # never written
                elif kind == "not_image" and i % 5 == 0:
                    (root / path).write_text("hello")
                else:
                    (root / path).write_bytes(_png())
                paths.append(path)
            base.write(root, docs=_set(docs.drop_columns(["image"]), "image_path", paths, pa.string()))
            return ["--data.init_args.root", str(root), "--data.init_args.image_size", "16"]

        return make

    cases.append(
        Case("data", "docs.parquet: image_path files missing", with_paths("missing"), ("docs.parquet", "image_path"))
    )
    cases.append(
        Case("data", "docs.parquet: image_path files not images", with_paths("not_image"), ("docs.parquet", "image"))
    )
    cases.append(
        Case(
            "data",
            "dataset folder missing",
            lambda work: ["--data.init_args.root", str(work / "nowhere")],
            ("nowhere",),
        )
    )
    return cases


# ---------------------------------------------------------------------------- recipe cases
def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, path + (key,))
    elif not isinstance(node, list):
        yield path, node


def _nested(path: tuple[str, ...], value) -> dict:
    out = value
    for key in reversed(path):
        out = {key: out}
    return out


def _recipe_cases(base: Base) -> list[Case]:
    cases: list[Case] = []

    def add(name: str, override: dict, culprit: tuple[str, ...], extra: list[str] | None = None) -> None:
        def make(work: Path, override=override) -> list[str]:
            path = work / "override.yaml"
            path.write_text(yaml.safe_dump(override, sort_keys=False))
            return ["--data.init_args.root", str(base.root), "-c", str(path), *(extra or [])]

        cases.append(Case("recipe", name, make, culprit))

    for path, value in _leaves(SMALL_RECIPE):
        if path[0] == "trainer" and path[1] in ("logger", "callbacks", "enable_progress_bar", "enable_model_summary"):
            continue
        key = ".".join(p for p in path if p != "init_args")
        leaf = path[-1]
        if leaf == "class_path":
            add(f"{key}: unknown class", _nested(path, str(value).rsplit(".", 1)[0] + ".NoSuchThing"), ("NoSuchThing",))
            continue
        misspelt = path[:-1] + (leaf[:-1] + leaf[-1] * 2 + "x",)
        add(f"{key}: misspelt key", _nested(misspelt, value), (misspelt[-1],))
        add(f"{key}: wrong type (text)", _nested(path, "oops"), ("oops",))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            add(f"{key}: negative", _nested(path, -2), (leaf, "-2"))

    dims = {"model": {"init_args": {"memory_bank": {"init_args": {"dim": 48}}}}}
    add("memory_bank.dim != doc_encoder.out_dim", dims, ("memory_bank",))
    qdim = {"model": {"init_args": {"query_encoder": {"init_args": {"out_dim": 24}}}}}
    add("query_encoder.out_dim != doc_encoder.out_dim (SQDC)", qdim, ("out_dim",))
    add(
        "memory_bank.capacity below the documents",
        {"model": {"init_args": {"memory_bank": {"init_args": {"capacity": 10}}}}},
        ("capacity",),
    )
    add(
        "features.num_dense != dense_* columns",
        {"model": {"init_args": {"features": {"num_dense": 3}}}},
        ("num_dense", "dense"),
    )
    add("features.num_cat != cat_* columns", {"model": {"init_args": {"features": {"num_cat": 2}}}}, ("num_cat", "cat"))
    text = ("model", "init_args", "doc_encoder", "init_args", "modalities", "text", "init_args")
    add("doc text encoder max_len below the document tokens", _nested(text + ("max_len",), 8), ("max_len",))
    add("doc text encoder num_types below the fields", _nested(text + ("num_types",), 2), ("num_types",))
    add(
        "history.short_len > long_len",
        {"data": {"init_args": {"history": {"short_len": 20, "long_len": 4}}}},
        ("short_len",),
    )
    add(
        "sampling backward > forward",
        {"model": {"init_args": {"sampling": {"forward": 0.2, "backward": 0.5}}}},
        ("sampling",),
    )
    add("similarity without a memory bank", {"model": {"init_args": {"memory_bank": None}}}, ("memory_bank",))
    add(
        "val_days + test_days cover every day",
        {"data": {"init_args": {"val_days": 3, "test_days": 2}}},
        ("val_days", "day"),
    )
    add("data.val_days 0 (no validation split)", {"data": {"init_args": {"val_days": 0}}}, ("val_days",))
    add(
        "tokenizer field unknown to the data",
        {"data": {"init_args": {"tokenizer": {"fields": {"headline": 8}}}}},
        ("headline",),
    )
    add(
        "encoder_checkpoint missing file",
        {"model": {"init_args": {"encoder_checkpoint": "/nonexistent/x.ckpt"}}},
        ("encoder_checkpoint",),
    )
    add("--ckpt_path missing file", {}, ("ckpt_path",), extra=["--ckpt_path", "/nonexistent/last.ckpt"])
    add(
        "optimizer lr as text",
        {"model": {"init_args": {"optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": "fast"}}}}},
        ("fast",),
    )
    add(
        "callback unknown class",
        {"trainer": {"callbacks": [{"class_path": "lemur.callbacks.NoSuchCallback"}]}},
        ("NoSuchCallback",),
    )
    add("recipe file is not YAML", {"model": "[unclosed"}, ("model",))
    return cases


# ---------------------------------------------------------------------------- running a case
def _base_args(work: Path) -> list[str]:
    recipe = work / "fuzz-base.yaml"
    recipe.write_text(yaml.safe_dump(SMALL_RECIPE, sort_keys=False))
    return [
        "fit",
        "-c",
        str(RECIPES / "lemur.yaml"),
        "-c",
        str(RECIPES / "tiny.yaml"),
        "-c",
        str(recipe),
        "--test_after_fit",
        "false",
        "--trainer.default_root_dir",
        str(work / "runs"),
    ]


def _clear(message: str, culprit: tuple[str, ...]) -> bool:
    low = message.lower()
    return all(any(word.lower() in low for word in group.split("|")) for group in culprit[:2]) if culprit else True


@contextlib.contextmanager
def _quiet():
    out, err = io.StringIO(), io.StringIO()
    levels = {
        name: logging.getLogger(name).level for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow")
    }
    for name in levels:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("ignore")
            yield out, err
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def run_case(case: Case, work: Path) -> Result:
    """Run one case in this process, the way ``lemur fit`` would, and classify the outcome."""
    from lemur.cli import main
    from lemur.trainer_cli import LemurCLI

    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    LemurCLI.current = None
    with _quiet() as (out, err):
        try:
            args = _base_args(work) + case.make(work)
            code = main(args)
            raised = None
        except SystemExit as exit_:  # argparse-style exits
            code, raised = (exit_.code if isinstance(exit_.code, int) else 1), None
        except BaseException as exc:  # noqa: BLE001 - a traceback is what the sweep looks for
            code, raised = None, exc
    seconds = time.perf_counter() - start
    cli = LemurCLI.current
    counts = {}
    if cli is not None and getattr(cli, "datamodule", None) is not None:
        counts = dict(getattr(cli.datamodule, "data_issues", {}) or {})
    message = err.getvalue().strip()
    first = next(
        (line for line in message.splitlines() if line.startswith("lemur:")),
        message.splitlines()[-1] if message else "",
    )
    if raised is not None:
        tb = traceback.format_exception_only(type(raised), raised)[-1].strip()
        return Result(case, "crash", f"traceback: {tb[:300]}", seconds, counts)
    if code == 0:
        if any(counts.get(k) for k in ("images_skipped", "text_values_cut", "image_files_missing")):
            return Result(case, "skipped", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())), seconds, counts)
        return Result(case, "accepted", "trained one step", seconds, counts)
    if "Traceback (most recent call last)" in message:
        return Result(case, "crash", f"exit {code} with a traceback: {first[:300]}", seconds, counts)
    if not first:
        return Result(case, "crash", f"exit {code} without a message", seconds, counts)
    full = message if len(message) < 4000 else message[:4000]
    if _clear(full, case.culprit):
        return Result(case, "rejected", first[:300], seconds, counts)
    return Result(case, "crash", f"unclear (expected {' / '.join(case.culprit[:2])}): {first[:300]}", seconds, counts)


# ---------------------------------------------------------------------------- the sweep
def build_cases(base: Base, quick: bool = False, only: str | None = None) -> list[Case]:
    cases = _data_cases(base) + _recipe_cases(base)
    if only:
        cases = [c for c in cases if only.lower() in c.name.lower()]
    if quick:  # a fixed sample across kinds: every 8th case
        cases = cases[::8]
    return cases


def summarize(results: list[Result]) -> dict[str, int]:
    counts = {"tried": len(results)} | {o: 0 for o in OUTCOMES}
    for r in results:
        counts[r.outcome] += 1
    return counts


def table(results: list[Result], show: str = "all") -> str:
    counts = summarize(results)
    lines = [
        "| cases tried | rejected (clear error) | skipped and counted | accepted | crashes |",
        "|---:|---:|---:|---:|---:|",
        "| " + " | ".join(str(counts[k]) for k in ("tried", "rejected", "skipped", "accepted", "crash")) + " |",
        "",
    ]
    by_kind = {}
    for r in results:
        by_kind.setdefault(r.case.kind, []).append(r)
    lines += ["| kind | tried | rejected | skipped | accepted | crashes |", "|---|---:|---:|---:|---:|---:|"]
    for kind, rs in by_kind.items():
        c = summarize(rs)
        lines.append(f"| {kind} | {c['tried']} | {c['rejected']} | {c['skipped']} | {c['accepted']} | {c['crash']} |")
    lines += ["", "| case | outcome | message / counts |", "|---|---|---|"]
    for r in results:
        if show == "all" or r.outcome == "crash":
            detail = r.detail.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r.case.kind}: {r.case.name} | {r.outcome} | {detail[:220]} |")
    return "\n".join(lines)


def sweep(cases: list[Case], work: Path, progress: bool = True) -> list[Result]:
    from tqdm.auto import tqdm

    results = []
    bar = tqdm(cases, desc="fuzz", unit="case", disable=not progress, file=sys.stderr)
    for i, case in enumerate(bar):
        result = run_case(case, work / f"case{i:03d}")
        results.append(result)
        crashes = sum(r.outcome == "crash" for r in results)
        bar.set_postfix_str(f"crashes={crashes}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lemur.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a fixed sample (every 8th case) instead of the whole sweep"
    )
    parser.add_argument("--only", default=None, help="only cases whose name contains this text")
    parser.add_argument("--out", default=None, help="also write the table (Markdown) to this file")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with contextlib.ExitStack() as stack:
        work = (
            Path(args.keep)
            if args.keep
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lemur-fuzz-")))
        )
        work.mkdir(parents=True, exist_ok=True)
        base = Base(work)
        cases = build_cases(base, quick=args.quick, only=args.only)
        if args.list:
            print("\n".join(f"{c.kind}: {c.name}" for c in cases))
            return 0
        cwd = os.getcwd()
        os.chdir(work)  # lemur writes nothing into the caller's folder
        try:
            start = time.perf_counter()
            results = sweep(cases, work)
        finally:
            os.chdir(cwd)
        text = table(results)
        print(table(results, show="crash"))
        print(f"\n{len(results)} cases in {time.perf_counter() - start:.0f} s")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text("# lemur fuzz sweep\n\n" + text + "\n")
            print(f"wrote {args.out}")
    return 1 if any(r.outcome == "crash" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
