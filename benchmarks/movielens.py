"""MovieLens-100K: popularity and ID logistic-regression baselines vs ID-only vs two-stage vs end-to-end LEMUR.

1. makes ``data/movielens-100k`` if missing (``lemur data movielens-100k``: the recbole 1.2.1 wheel
   from PyPI, or ``--wheel``);
2. runs the suite ``recipes/suites/movielens_100k.yaml`` (``lemur run``: every variant x seed, each a
   ``lemur fit`` that tests its best checkpoint and saves the scored test rows; finished runs are skipped
   when started again; ``--only`` picks variants);
3. fits two deterministic sanity baselines on the training days, each with one hyperparameter chosen by
   validation AUC, and scores the very same test rows: ``popularity`` (each movie's smoothed training CTR,
   ``(clicks + a * prior) / (impressions + a)``, prior = the training CTR) and ``logreg_ids``
   (scikit-learn ``LogisticRegression`` on one-hot user + movie IDs, L2 strength ``C``);
4. for the baselines and every finished run (its ``test_predictions.parquet``, else ``lemur predict`` with the
   best checkpoint): AUC, GAUC as a user average (unweighted mean of per-user AUC over users with both
   labels) and row-weighted (lemur's ``test/gauc``), QAUC (per one-hour session), AUC on cold-start movies
   (test rows whose movie is absent from the training days) and users, and each variant's difference from
   ``id_only`` with the 95% paired-bootstrap interval pooled over seeds (``lemur.metrics.bootstrap``: rows
   for AUC, users for GAUC, sessions for QAUC; a baseline is paired with each ``id_only`` seed), and
   end-to-end minus two-stage (``CONTRASTS``) the same way;
5. writes ``benchmarks/results/movielens-100k-<date>-cpu.{json,csv,md,png}`` (one CSV row per variant).

    python benchmarks/movielens.py                       # everything (about an hour on a 2-core CPU)
    python benchmarks/movielens.py --only id_only        # the ID-only runs (+ the baselines): minutes each
    python benchmarks/movielens.py --seeds 0             # one seed
    python benchmarks/movielens.py --skip-run            # only baselines + report from finished runs
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, device_label, machine  # noqa: E402

from lemur.metrics.bootstrap import NAN_DELTA, paired_delta, read_predictions  # noqa: E402
from lemur.metrics.grouped_auc import per_group_auc  # noqa: E402
from lemur.suite import PREDICTIONS_FILE  # noqa: E402

SUITE = REPO / "recipes" / "suites" / "movielens_100k.yaml"
DATA = REPO / "data" / "movielens-100k"
REFERENCE = "id_only"
BASELINES = ("popularity", "logreg_ids")
VARIANT_ORDER = (*BASELINES, "id_only", "two_stage_minilm", "end_to_end_minilm", "two_stage", "end_to_end")
CONTRASTS = (("end_to_end_minilm", "two_stage_minilm"), ("end_to_end", "two_stage"))
"""Pairs of neural variants also compared directly (the first minus the second, paired by seed)."""
COLUMNS = ("label", "user_id", "doc_id", "session_id", "is_new_doc")
POPULARITY_STRENGTHS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
"""Grid of the pseudo-count ``a`` of :func:`popularity_scores`."""
LOGREG_CS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Grid of the inverse L2 strength ``C`` of :func:`logreg_ids`."""
METRICS = (
    "auc",
    "gauc_user",
    "gauc",
    "qauc",
    "auc_cold_item",
    "auc_warm_item",
    "auc_cold_user",
    "auc_warm_user",
)
DELTA_METRICS = ("auc", "gauc_user", "gauc", "qauc", "auc_cold_item", "auc_cold_user")


# ------------------------------------------------------------------------------------ data
def load_split(root: Path, val_days: int, test_days: int, cold_docs: float = 0.0, cold_docs_seed: int = 0) -> dict:
    """``{"train", "val", "test"}`` column dicts (``COLUMNS``) of ``root/events.parquet``, the day lists, the
    training days' documents and users, and the test rows' ``cold_item`` / ``cold_user`` masks. With
    ``cold_docs`` > 0 the rows before the test days of the documents that ``LemurDataModule(cold_docs=...)``
    holds out are dropped first (the same :func:`lemur.data.datamodule.cold_documents` draw)."""
    events = pq.read_table(root / "events.parquet", columns=["day", *COLUMNS[:-1]])
    cols = {c: events[c].to_numpy() for c in ("day", *COLUMNS[:-1])}
    if cold_docs > 0:
        from lemur.data.datamodule import cold_documents

        _, keep = cold_documents(cols["doc_id"], cols["day"], test_days, cold_docs, cold_docs_seed)
        all_days = np.unique(cols["day"])
        cols = {c: v[keep] for c, v in cols.items()}
    else:
        all_days = None
    cols["label"] = cols["label"].astype(np.int64)
    docs_file = root / "docs.parquet"
    publish = None
    if docs_file.exists() and "publish_day" in pq.read_schema(docs_file).names:
        docs = pq.read_table(docs_file, columns=["doc_id", "publish_day"])
        publish = dict(zip(docs["doc_id"].to_pylist(), docs["publish_day"].to_pylist()))
    cols["is_new_doc"] = (
        np.asarray([publish.get(d) for d in cols["doc_id"].tolist()], dtype=object) == cols["day"]
        if publish is not None
        else np.zeros(len(cols["day"]), bool)
    ).astype(bool)
    days = np.unique(cols["day"]) if all_days is None else all_days
    if len(days) <= val_days + test_days:
        raise ValueError(f"{root}: {len(days)} distinct days, need more than val_days + test_days")
    n_train = len(days) - val_days - test_days
    split_days = {
        "train": days[:n_train],
        "val": days[n_train : n_train + val_days],
        "test": days[n_train + val_days :],
    }
    out = {"days": {k: v.tolist() for k, v in split_days.items()}}
    for name, chosen in split_days.items():
        keep = np.flatnonzero(np.isin(cols["day"], chosen))
        if name == "test":  # read_predictions' canonical order
            keep = keep[np.lexsort((cols["doc_id"][keep], cols["session_id"][keep]))]
        out[name] = {c: cols[c][keep] for c in COLUMNS}
    out["train_docs"] = np.unique(out["train"]["doc_id"])
    out["train_users"] = np.unique(out["train"]["user_id"])
    out["cold_item"] = ~np.isin(out["test"]["doc_id"], out["train_docs"])
    out["cold_user"] = ~np.isin(out["test"]["user_id"], out["train_users"])
    out["cold_docs"] = {"share": cold_docs, "seed": cold_docs_seed}
    return out


# ------------------------------------------------------------------------------------ metrics
def auc(label: np.ndarray, score: np.ndarray) -> float:
    """Rank AUC (Mann-Whitney U with average ranks for ties); NaN without both classes."""
    label = np.asarray(label).astype(bool)
    pos, neg = int(label.sum()), int((~label).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = np.asarray(score)[order]
    ranks = np.empty(len(score), np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def grouped(label: np.ndarray, score: np.ndarray, groups: np.ndarray, row_weighted: bool) -> tuple[float, int]:
    """Mean of the per-group AUCs (``lemur.metrics.per_group_auc``; groups with one class skipped) over the
    valid groups, each weighted 1 (``row_weighted=False``) or by its rows; and how many groups count."""
    per = per_group_auc(
        torch.as_tensor(np.asarray(score), dtype=torch.float64),
        torch.as_tensor(np.asarray(label).astype(np.int64)),
        torch.as_tensor(np.asarray(groups).astype(np.int64)),
    )
    valid = per["valid"].numpy()
    if not valid.any():
        return math.nan, 0
    aucs = per["auc"].numpy()[valid]
    weights = per["rows"].numpy()[valid].astype(np.float64) if row_weighted else np.ones(len(aucs))
    return float((aucs * weights).sum() / weights.sum()), int(valid.sum())


def point_metrics(run: dict, cold_item: np.ndarray, cold_user: np.ndarray) -> dict[str, float]:
    """``METRICS`` of one run's test scores (``run["score"]`` with the test columns)."""
    label, score = run["label"], np.asarray(run["score"], np.float64)
    out = {
        "auc": auc(label, score),
        "gauc_user": grouped(label, score, run["user_id"], row_weighted=False)[0],
        "gauc": grouped(label, score, run["user_id"], row_weighted=True)[0],
        "qauc": grouped(label, score, run["session_id"], row_weighted=False)[0],
    }
    for name, mask in (("item", cold_item), ("user", cold_user)):
        out[f"auc_cold_{name}"] = auc(label[mask], score[mask])
        out[f"auc_warm_{name}"] = auc(label[~mask], score[~mask])
    return out


def _view(run: dict, metric: str, cold_item: np.ndarray, cold_user: np.ndarray) -> tuple[dict, str]:
    """The run as ``paired_delta`` must see it to compute ``metric``, and paired_delta's name for it:
    GAUC as a user average is its uniform session mean (``qauc``) with the users as the sessions; the
    cold-start AUCs are its ``auc_new`` with the cold rows as the new ones."""
    if metric == "gauc_user":
        return {**run, "session_id": run["user_id"]}, "qauc"
    if metric == "auc_cold_item":
        return {**run, "is_new_doc": cold_item}, "auc_new"
    if metric == "auc_cold_user":
        return {**run, "is_new_doc": cold_user}, "auc_new"
    return run, metric


def deltas(
    variant: Sequence[dict],
    reference: Sequence[dict],
    cold_item: np.ndarray,
    cold_user: np.ndarray,
    n_resamples: int = 1000,
) -> dict[str, float]:
    """``<m>_delta`` / ``_delta_ci_low`` / ``_delta_ci_high`` for ``m`` in ``DELTA_METRICS``: the seed-averaged
    metric of ``variant`` minus that of ``reference`` (runs paired seed by seed; a deterministic baseline
    is passed once per reference seed) with the 95% paired-bootstrap interval of ``paired_delta``."""
    out = {}
    for m in DELTA_METRICS:
        mask = {"auc_cold_item": cold_item, "auc_cold_user": cold_user}.get(m)
        label = reference[0]["label"] if reference else np.zeros(0)
        delta = NAN_DELTA
        if variant and reference and (mask is None or len(np.unique(label[mask])) == 2):
            mine = [_view(r, m, cold_item, cold_user)[0] for r in variant]
            ref = [_view(r, m, cold_item, cold_user)[0] for r in reference]
            delta = paired_delta(mine, ref, _view(reference[0], m, cold_item, cold_user)[1], n_resamples=n_resamples)
        out[f"{m}_delta"], out[f"{m}_delta_ci_low"], out[f"{m}_delta_ci_high"] = delta.value, delta.low, delta.high
    return out


# ------------------------------------------------------------------------------------ baselines
def popularity_scores(train: dict, doc_id: np.ndarray, strength: float) -> np.ndarray:
    """``(clicks_i + a * prior) / (impressions_i + a)`` of each row's item ``i`` over the training rows,
    ``prior`` = the training CTR, ``a`` = ``strength`` > 0 (an item absent from training scores ``prior``)."""
    if not strength > 0:
        raise ValueError(f"strength must be > 0, got {strength}")
    label = train["label"].astype(np.float64)
    prior = float(label.mean())
    docs, inverse = np.unique(train["doc_id"], return_inverse=True)
    clicks = np.bincount(inverse, weights=label, minlength=len(docs))
    shows = np.bincount(inverse, minlength=len(docs)).astype(np.float64)
    at = np.clip(np.searchsorted(docs, doc_id), 0, max(len(docs) - 1, 0))
    seen = docs[at] == doc_id if len(docs) else np.zeros(len(doc_id), bool)
    c = np.where(seen, clicks[at], 0.0)
    n = np.where(seen, shows[at], 0.0)
    return (c + strength * prior) / (n + strength)


def logreg_ids(train: dict, C: float) -> Callable[[dict], np.ndarray]:
    """Logistic regression (L2, ``C``, lbfgs) on one-hot user + item IDs of the training rows; returns a
    scorer of rows (the logit). An ID absent from training adds nothing (``handle_unknown="ignore"``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    def design(rows: dict) -> np.ndarray:
        return np.stack([rows["user_id"], rows["doc_id"]], 1)

    encoder = OneHotEncoder(handle_unknown="ignore").fit(design(train))
    model = LogisticRegression(C=C, max_iter=2000).fit(encoder.transform(design(train)), train["label"])
    return lambda rows: model.decision_function(encoder.transform(design(rows))).astype(np.float64)


def _choose(grid: Sequence[float], scores_on_val: Callable[[float], np.ndarray], val: dict) -> tuple[float, dict]:
    """The grid value with the highest validation AUC (the smallest one on a tie) and the AUC of each."""
    curve = {float(x): auc(val["label"], scores_on_val(x)) for x in grid}
    best = max(curve, key=lambda x: (curve[x], -x))
    return best, curve


def baselines(split: dict) -> dict[str, dict]:
    """``popularity`` and ``logreg_ids`` fitted on the training days, tuned on the validation days: per name,
    ``run`` (the test columns + ``score``), ``param`` (name and chosen value) and ``val_auc`` (the grid)."""
    train, val, test = split["train"], split["val"], split["test"]
    out = {}
    a, curve = _choose(POPULARITY_STRENGTHS, lambda s: popularity_scores(train, val["doc_id"], s), val)
    out["popularity"] = {
        "run": {**test, "score": popularity_scores(train, test["doc_id"], a)},
        "param": {"a": a},
        "val_auc": curve,
    }
    fitted = {C: logreg_ids(train, C) for C in LOGREG_CS}
    C, curve = _choose(LOGREG_CS, lambda c: fitted[c](val), val)
    out["logreg_ids"] = {"run": {**test, "score": fitted[C](test)}, "param": {"C": C}, "val_auc": curve}
    return out


# ------------------------------------------------------------------------------------ runs
def ensure_data(wheel: str | None) -> None:
    if (DATA / "events.parquet").exists():
        return
    cmd = [sys.executable, "-m", "lemur.cli", "data", "movielens-100k", "--out", str(DATA)]
    if wheel:
        cmd += ["--wheel", wheel]
    subprocess.run(cmd, check=True, cwd=REPO)


def split_of(suite: dict) -> dict:
    """:func:`load_split` of ``DATA`` by the ``val_days`` / ``test_days`` / ``cold_docs`` of the suite's base
    recipes (later recipes override earlier ones, as in ``lemur fit -c a -c b``)."""
    args = {}
    for path in suite["base"]:
        recipe = yaml.safe_load((REPO / path).read_text()) or {}
        args.update((recipe.get("data") or {}).get("init_args") or {})
    return load_split(
        DATA, args["val_days"], args["test_days"], args.get("cold_docs", 0.0), args.get("cold_docs_seed", 0)
    )


def predict(folder: Path, recipes: list[str], env: dict) -> Path:
    """Scores of the test days by the run's best checkpoint (cached as predictions.parquet); for runs that
    predate the suite's ``test_predictions.parquet``."""
    out = folder / "predictions.parquet"
    if out.exists():
        return out
    best = sorted((folder / "checkpoints").glob("best-*.ckpt"))
    ckpt = best[-1] if best else folder / "checkpoints" / "last.ckpt"
    cmd = [
        sys.executable,
        "-m",
        "lemur.cli",
        "predict",
        *[x for r in recipes for x in ("-c", r)],
        "--ckpt_path",
        str(ckpt),
        "--predictions.output_path",
        str(out),
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks",
        "[]",
    ]
    with open(folder / "predict_log.txt", "w") as log:
        subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return out


def run_scores(folder: Path, recipes: list[str], env: dict, test: dict) -> dict | None:
    """The run's test scores on ``test``'s rows (``test``'s columns + ``score``), from the suite's
    ``test_predictions.parquet`` (``read_predictions``), else from ``lemur predict``; None (with a warning)
    when they are not the same test rows (e.g. a ``--max-steps`` smoke run that tested 2 batches)."""
    path = folder / PREDICTIONS_FILE
    if path.exists() or any(folder.glob(f"{path.stem}.rank*{path.suffix}")):
        try:
            run = read_predictions(path)
        except ValueError as err:  # a file lacking a column
            print(f"warning: {err}; left out", file=sys.stderr)
            return None
    else:
        table = pq.read_table(predict(folder, recipes, env))
        run = {c: table[c].to_numpy() for c in ("score", "label", "session_id", "user_id", "doc_id")}
        order = np.lexsort((run["doc_id"], run["session_id"]))  # read_predictions' order
        run = {k: v[order] for k, v in run.items()}
    same = len(run["label"]) == len(test["label"]) and all(
        np.array_equal(run[k], test[k]) for k in ("session_id", "doc_id", "label")
    )
    if not same:
        print(f"warning: {folder}: its test predictions are not the test days' rows; left out", file=sys.stderr)
        return None
    return {**test, "score": np.asarray(run["score"], np.float64)}


def collect(suite_out: Path, suite: dict, split: dict, env: dict) -> tuple[list[dict], dict[str, dict[int, dict]]]:
    """Per finished run of the suite: a row of metrics; and per variant, per seed, its test scores."""
    rows, runs = [], {}
    base = suite["base"]
    for variant in suite["variants"]:
        stages = variant.get("stages") or [{"name": "fit", "recipes": variant.get("recipes", [])}]
        last = stages[-1]
        for seed_dir in sorted((suite_out / variant["name"]).glob("seed*")):
            folder = seed_dir / last["name"]
            record = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
            if record.get("status") != "tested":
                continue
            run = run_scores(folder, base + last.get("recipes", []), env, split["test"])
            if run is None:
                continue
            seed = int(seed_dir.name[4:])
            runs.setdefault(variant["name"], {})[seed] = run
            logged = record.get("metrics", {})
            total_train_s = 0.0
            for st in stages:
                rec = json.loads((seed_dir / st["name"] / "metrics.json").read_text())
                total_train_s += rec.get("phases", {}).get("train", {}).get("seconds", 0.0)
            rows.append(
                {
                    "variant": variant["name"],
                    "seed": seed,
                    **point_metrics(run, split["cold_item"], split["cold_user"]),
                    # the run's own test metrics (lemur fit), to check the recomputed ones against
                    "logged_test_auc": logged.get("test/auc"),
                    "logged_test_gauc": logged.get("test/gauc"),
                    "logged_test_qauc": logged.get("test/qauc"),
                    "train_rows_per_s": record.get("phases", {}).get("train", {}).get("rows_per_s"),
                    "train_wall_s_all_stages": round(total_train_s, 1),
                    "params": record.get("params", {}).get("total"),
                    "trainable": record.get("params", {}).get("trainable"),
                    "mlflow_run_id": record.get("run_id"),
                }
            )
    return rows, runs


def summarize(
    rows: list[dict],
    runs: dict[str, dict[int, dict]],
    fitted: dict[str, dict],
    split: dict,
    n_resamples: int = 1000,
) -> list[dict]:
    """One row per variant present (``VARIANT_ORDER``, then any other variant of ``runs``): the seed mean and
    sample std of ``METRICS`` and the difference from ``REFERENCE`` with its paired-bootstrap interval (NaN
    for the reference itself, or without it)."""
    ref = runs.get(REFERENCE, {})
    out = []
    for name in (*VARIANT_ORDER, *(n for n in runs if n not in VARIANT_ORDER)):  # then other suites' variants
        if name in fitted:
            mine = {None: fitted[name]["run"]}
            metrics = [point_metrics(fitted[name]["run"], split["cold_item"], split["cold_user"])]
            seeds = sorted(ref)
            pairs = ([fitted[name]["run"]] * len(seeds), [ref[s] for s in seeds])
            agg = {"variant": name, "kind": "baseline", "seeds": 0, "a": None, "C": None, **fitted[name]["param"]}
        elif name in runs:
            mine = runs[name]
            metrics = [r for r in rows if r["variant"] == name]
            seeds = sorted(set(mine) & set(ref))
            pairs = ([mine[s] for s in seeds], [ref[s] for s in seeds])
            agg = {"variant": name, "kind": "neural", "seeds": len(mine), "a": None, "C": None}
            agg["train_wall_s_all_stages"] = statistics.mean(r["train_wall_s_all_stages"] for r in metrics)
        else:
            continue
        for m in METRICS:
            values = [r[m] for r in metrics if r[m] is not None and not math.isnan(r[m])]
            agg[m] = statistics.mean(values) if values else math.nan
            agg[m + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        if name == REFERENCE or not seeds:
            pairs, seeds = ([], []), []
        agg.update(deltas(*pairs, split["cold_item"], split["cold_user"], n_resamples=n_resamples))
        agg["delta_seeds"] = seeds
        out.append(agg)
    return out


def contrasts(runs: dict[str, dict[int, dict]], split: dict, n_resamples: int = 1000) -> list[dict]:
    """``CONTRASTS`` whose two variants both have runs: the first minus the second, paired by seed, with
    the intervals of :func:`deltas`."""
    out = []
    for name, other in CONTRASTS:
        seeds = sorted(set(runs.get(name, {})) & set(runs.get(other, {})))
        if seeds:
            pairs = ([runs[name][s] for s in seeds], [runs[other][s] for s in seeds])
            row = deltas(*pairs, split["cold_item"], split["cold_user"], n_resamples=n_resamples)
            out.append({"variant": name, "reference": other, "delta_seeds": seeds, **row})
    return out


# ------------------------------------------------------------------------------------ report
LABELS = {
    "auc": "AUC",
    "gauc_user": "GAUC (user avg)",
    "gauc": "GAUC (row-weighted)",
    "qauc": "QAUC",
    "auc_cold_item": "cold-item AUC",
    "auc_warm_item": "warm-item AUC",
    "auc_cold_user": "cold-user AUC",
    "auc_warm_user": "warm-user AUC",
}


def fmt(mean: float, std: float, n: int) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{mean:.4f}" if n < 2 else f"{mean:.4f} ± {std:.4f}"


def fmt_ci(value: float, low: float, high: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    mark = "**" if low > 0 or high < 0 else ""  # bold: the interval excludes 0
    return f"{mark}{value:+.4f}{mark} [{low:+.4f}, {high:+.4f}]"


def verdict(summary: list[dict]) -> list[str]:
    """One line per baseline: does ``REFERENCE`` beat it on AUC and on both GAUCs (interval beyond 0)?"""
    names = {s["variant"] for s in summary}
    lines = []
    for s in summary:
        if s["kind"] != "baseline" or REFERENCE not in names or math.isnan(s["auc_delta"]):
            continue
        parts = []
        for m in ("auc", "gauc_user", "gauc", "qauc"):
            # the row holds baseline - id_only: id_only wins when the whole interval is below 0
            d, low, high = -s[f"{m}_delta"], -s[f"{m}_delta_ci_high"], -s[f"{m}_delta_ci_low"]
            word = "better" if low > 0 else "worse" if high < 0 else "within noise"
            parts.append(f"{LABELS[m]} {d:+.4f} [{low:+.4f}, {high:+.4f}] ({word})")
        lines.append(f"- `{REFERENCE}` minus `{s['variant']}`: " + "; ".join(parts) + ".")
    return lines


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def write_report(
    rows: list[dict],
    summary: list[dict],
    fitted: dict,
    split: dict,
    epochs: int,
    stem: Path,
    data_info: dict,
    n_resamples: int = 1000,
    pairs: Sequence[dict] = (),
) -> None:
    test = split["test"]
    cold_item, cold_user = split["cold_item"], split["cold_user"]
    payload = {
        "machine": machine("cpu"),
        "suite": _shown(SUITE),
        "command": " ".join(sys.argv),
        "data": data_info,
        "split": {
            "days": split["days"],
            "rows": {k: len(split[k]["label"]) for k in ("train", "val", "test")},
            "cold_item_rows": int(cold_item.sum()),
            "cold_items": int(len(np.unique(test["doc_id"][cold_item]))),
            "cold_user_rows": int(cold_user.sum()),
            "cold_users": int(len(np.unique(test["user_id"][cold_user]))),
            "cold_docs": split.get("cold_docs", {"share": 0.0, "seed": 0}),
        },
        "baselines": {k: {"param": v["param"], "val_auc": v["val_auc"]} for k, v in fitted.items()},
        "reference": REFERENCE,
        "bootstrap": {"resamples": n_resamples, "confidence": 0.95, "method": "lemur.metrics.bootstrap.paired_delta"},
        "summary": summary,
        "contrasts": list(pairs),
        "runs": rows,
    }
    facts = payload["split"]
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=float))
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        fields = list(dict.fromkeys(k for s in summary for k in s))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows([{**s, "delta_seeds": " ".join(map(str, s["delta_seeds"]))} for s in summary])
    m = payload["machine"]
    pop, lr = fitted.get("popularity"), fitted.get("logreg_ids")
    lines = [
        f"# MovieLens-100K: sanity baselines vs the runs of `{_shown(SUITE)}` ({m['date']}, CPU)",
        "",
        f"- Machine: {m['cpu_count']} CPU cores, torch {m['torch']}, lightning {m['lightning']}; shared with other "
        "jobs, so wall times are rough.",
        "- Data: `lemur data movielens-100k --out data/movielens-100k` (recbole 1.2.1 wheel; 100,000 ratings, label = "
        "rating >= 4, sessions = a user's ratings in one clock hour, query = title of the movie last liked before the "
        "session).",
        f"- Split (by distinct days, as the recipes): train {facts['rows']['train']:,} rows, val "
        f"{facts['rows']['val']:,}, test {facts['rows']['test']:,} (last {len(facts['days']['test'])} distinct days). "
        + (
            f"`data.cold_docs` = {facts['cold_docs']['share']:g} (seed {facts['cold_docs']['seed']}): that share of "
            "the movies rated before the test days is held out, their earlier ratings dropped from training, "
            "validation and histories, so the test scores them as cold-start movies. "
            if facts["cold_docs"]["share"] > 0
            else ""
        )
        + f"Cold-start items: {facts['cold_item_rows']:,} test rows of {facts['cold_items']} movies never rated in "
        f"the training days; cold-start users: {facts['cold_user_rows']:,} test rows of {facts['cold_users']} users "
        "with no training-day rating.",
        "- Baselines (deterministic, no seed; fitted on the training days, hyperparameter by validation AUC): "
        + (
            f"`popularity` = (clicks + a * prior) / (impressions + a) of the movie, prior = training CTR, a = "
            f"{pop['param']['a']:g} (val AUC {pop['val_auc'][pop['param']['a']]:.4f}); "
            if pop
            else ""
        )
        + (
            f"`logreg_ids` = scikit-learn LogisticRegression (L2, lbfgs) on one-hot user + movie IDs, C = "
            f"{lr['param']['C']:g} (val AUC {lr['val_auc'][lr['param']['C']]:.4f}); an ID unseen in training adds "
            "nothing."
            if lr
            else ""
        ),
        f"- Neural runs: `lemur fit` for up to {epochs} epoch{'s' if epochs != 1 else ''} per run, stopped when val "
        "AUC has not improved for 3 checks (2 per epoch; `callbacks/early_stopping.yaml`); the best checkpoint by "
        "val AUC scores the test days (`test_predictions.parquet`); the metrics below are recomputed from those "
        "scores (row-weighted GAUC = the run's logged test/gauc).",
        "- GAUC (user avg) = unweighted mean of per-user AUC over users with both labels; GAUC (row-weighted) = "
        "the same weighted by the user's test rows; QAUC = mean AUC per session. Means ± sample std over seeds.",
        f"- Commands: `python benchmarks/movielens.py --suite {_shown(SUITE)}` = `lemur run {_shown(SUITE)}` + "
        "the baselines + this report.",
        "",
        "| variant | seeds | " + " | ".join(LABELS[k] for k in METRICS) + " | train s (all stages) |",
        "|---|---:|" + "---:|" * len(METRICS) + "---:|",
    ]
    for s in summary:
        n = s["seeds"]
        cells = [fmt(s[k], s[k + "_std"], n) for k in METRICS]
        train_s = f"{s['train_wall_s_all_stages']:.0f}" if "train_wall_s_all_stages" in s else "-"
        lines.append(f"| {s['variant']} | {n or '-'} | " + " | ".join(cells) + f" | {train_s} |")
    lines += [
        "",
        f"Difference from `{REFERENCE}` (absolute; 95% paired bootstrap interval, {n_resamples:,} resamples, over the "
        "same test rows: rows for AUC, users for GAUC, sessions for QAUC; seeds pooled, a baseline paired with every "
        f"`{REFERENCE}` seed; **bold**: the interval excludes 0):",
        "",
        "| variant | paired seeds | " + " | ".join(LABELS[k] for k in DELTA_METRICS) + " |",
        "|---|---|" + "---|" * len(DELTA_METRICS),
    ]
    for s in summary:
        if s["variant"] == REFERENCE:
            continue
        cells = [fmt_ci(s[f"{k}_delta"], s[f"{k}_delta_ci_low"], s[f"{k}_delta_ci_high"]) for k in DELTA_METRICS]
        seeds = " ".join(map(str, s["delta_seeds"])) or "n/a"
        lines.append(f"| {s['variant']} | {seeds} | " + " | ".join(cells) + " |")
    if pairs:
        lines += [
            "",
            "End-to-end minus two-stage (frozen encoders), paired seed by seed over the same test rows:",
            "",
            "| variant | minus | paired seeds | " + " | ".join(LABELS[k] for k in DELTA_METRICS) + " |",
            "|---|---|---|" + "---|" * len(DELTA_METRICS),
        ]
        for c in pairs:
            cells = [fmt_ci(c[f"{k}_delta"], c[f"{k}_delta_ci_low"], c[f"{k}_delta_ci_high"]) for k in DELTA_METRICS]
            seeds = " ".join(map(str, c["delta_seeds"]))
            lines.append(f"| {c['variant']} | {c['reference']} | {seeds} | " + " | ".join(cells) + " |")
    reading = verdict(summary)
    if reading:
        lines += ["", f"Does `{REFERENCE}` beat the baselines?", "", *reading]
    lines += [
        "",
        "Per run (train rows/s of the last stage and wall time of all stages: the machine's load changed during the "
        "session, so compare them only between runs of one seed):",
        "",
        "| variant | seed | logged test AUC | AUC | GAUC (user avg) | GAUC (rows) | QAUC | cold-item AUC | "
        "cold-user AUC | train rows/s | train s (all stages) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [fmt(r[k], 0.0, 1) for k in ("logged_test_auc", "auc", "gauc_user", "gauc", "qauc")]
        cells += [fmt(r[k], 0.0, 1) for k in ("auc_cold_item", "auc_cold_user")]
        lines.append(
            f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + f" | {(r['train_rows_per_s'] or 0):.0f} | "
            f"{r['train_wall_s_all_stages']:.0f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(summary, stem.with_suffix(".png"))


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("auc", "gauc_user", "gauc", "qauc", "auc_cold_item")
    others = [s for s in summary if s["variant"] != REFERENCE and not math.isnan(s["auc_delta"])]
    fig, axes = plt.subplots(1, 2 if others else 1, figsize=(13 if others else 8, 4), squeeze=False)
    ax = axes[0, 0]
    width = 0.8 / max(len(summary), 1)
    for i, s in enumerate(summary):
        x = np.arange(len(shown)) + (i - (len(summary) - 1) / 2) * width
        label = s["variant"] + (f" ({s['seeds']} seeds)" if s["seeds"] else " (deterministic)")
        ax.bar(x, [s[m] for m in shown], width, yerr=[s[m + "_std"] for m in shown], label=label, capsize=3)
    ax.set_xticks(np.arange(len(shown)), [LABELS[m] for m in shown], fontsize=8)
    values = [s[m] for s in summary for m in shown if not math.isnan(s[m])]
    if values:
        ax.set_ylim(max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.03))
    ax.set_title("MovieLens-100K test days (rating >= 4)")
    ax.legend(fontsize=7)
    if others:
        ax = axes[0, 1]
        width = 0.8 / len(others)
        for i, s in enumerate(others):
            x = np.arange(len(shown)) + (i - (len(others) - 1) / 2) * width
            v = np.array([s[f"{m}_delta"] for m in shown])
            err = np.array(
                [
                    [s[f"{m}_delta"] - s[f"{m}_delta_ci_low"] for m in shown],
                    [s[f"{m}_delta_ci_high"] - s[f"{m}_delta"] for m in shown],
                ]
            )
            ax.bar(x, np.nan_to_num(v), width, yerr=np.nan_to_num(err), label=s["variant"], capsize=3)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(shown)), [LABELS[m] for m in shown], fontsize=8)
        ax.set_title(f"difference from {REFERENCE} (95% paired bootstrap CI)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    global SUITE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the suite's 0,1,2)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (passed to lemur run)")
    parser.add_argument(
        "--only", default=None, help="comma-separated variants to train, e.g. id_only (passed to lemur run)"
    )
    parser.add_argument(
        "--suite",
        default=str(SUITE),
        help="another suite on the MovieLens recipes with an id_only variant, e.g. "
        "experiments/movielens/movielens_suite.yaml (its report is named movielens-100k-<suite name>-<date>)",
    )
    parser.add_argument("--out", default=None, help="suite output folder (default: outputs/suites/<suite name>)")
    parser.add_argument("--wheel", default=None, help="recbole 1.2.1 wheel, if PyPI cannot be reached")
    parser.add_argument("--skip-run", action="store_true", help="do not train; report the finished runs")
    parser.add_argument("--results", default=str(RESULTS), help="where the results files go")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of each interval")
    args = parser.parse_args(argv)
    default_suite = SUITE
    SUITE = Path(args.suite).resolve()
    if not SUITE.is_file():
        parser.error(f"--suite: no such file {args.suite!r}")
    env = {**os.environ}
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlruns.db'}")
    ensure_data(args.wheel)
    suite = yaml.safe_load(SUITE.read_text())
    if REFERENCE not in {v["name"] for v in suite["variants"]}:
        parser.error(f"--suite: {args.suite} has no variant named {REFERENCE!r}, the reference of the report")
    args.out = args.out or str(REPO / "outputs" / "suites" / suite["name"])
    if args.only:
        names = {v["name"] for v in suite["variants"]}
        unknown = [n for n in args.only.split(",") if n.strip() and n.strip() not in names]
        if unknown:
            parser.error(f"--only: unknown variant(s) {unknown}; the suite has {sorted(names)}")
    if not args.skip_run:
        cmd = [sys.executable, "-m", "lemur.cli", "run", str(SUITE), "--out", args.out, "--jobs", str(args.jobs)]
        if args.seeds:
            cmd += ["--seeds", args.seeds]
        if args.only:
            cmd += ["--only", args.only]
        subprocess.run(cmd, check=False, cwd=REPO, env=env)
    base = yaml.safe_load((REPO / suite["base"][0]).read_text())
    split = split_of(suite)
    print("fitting the baselines (popularity, logreg_ids) on the training days ...", flush=True)
    fitted = baselines(split)
    rows, runs = collect(Path(args.out), suite, split, env)
    if not rows:
        print("no finished neural runs: the report has the baselines only", file=sys.stderr)
    summary = summarize(rows, runs, fitted, split, n_resamples=args.resamples)
    suite_args = suite.get("args", [])
    epochs = (
        int(suite_args[suite_args.index("--trainer.max_epochs") + 1])
        if "--trainer.max_epochs" in suite_args
        else base["trainer"]["max_epochs"]
    )
    tag = "" if SUITE == default_suite else f"-{suite['name']}"
    stem = Path(args.results) / f"movielens-100k{tag}-{machine('cpu')['date']}-{device_label('cpu')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    info = DATA / "movielens.json"
    data_info = json.loads(info.read_text()) if info.exists() else {}
    pairs = contrasts(runs, split, n_resamples=args.resamples)
    write_report(rows, summary, fitted, split, epochs, stem, data_info, n_resamples=args.resamples, pairs=pairs)
    print(stem.with_suffix(".md").read_text())
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
