"""Do document vectors carry LEMUR-Synth's planted signals? Probes of frozen vectors, before any suite runs.

The planted signals (docs/synth.md) each belong to one mechanism of LEMUR:

* **appeal** (end-to-end vs two-stage): a document's appeal is the standardised sum of the valences of
  the query-irrelevant appeal words in its OCR. The probe is a ridge regression (scikit-learn) from the
  document vector to the appeal, fitted on 80% of the documents and scored (R²) on the rest. A
  two-stage encoder should *drop* it (SQDC never needs it); an end-to-end one should *keep* it (the
  click loss pays for it).
* **subtopic** (memory bank + similarity): documents of one topic are split into sub-topics written
  with the topic's own words. The probe is the AUC with which the cosine of two same-topic documents'
  vectors tells whether they share a sub-topic: what the similarity features see when a target is
  compared with a user's history. Relevance training must keep it.

Reference rows: a randomly initialised encoder, and the content itself (the bag of appeal words with
their valences; the bag of topic words), which is each signal's ceiling.

    python diagnostics/signal_probe.py --checkpoint two_stage=outputs/.../pretrain/checkpoints/last.ckpt \\
        --checkpoint end_to_end=outputs/.../end_to_end/seed0/fit/checkpoints/last.ckpt

Needs scikit-learn (the `test` extra). Writes ``results/signal-probe[-<tag>]-<date>-cpu.json`` + ``.csv`` + ``.png``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the shared script helpers
from common import REPO, add_recipe_args, add_run_args, build, ensure_data, machine, save_figure, set_threads, write  # noqa: E402


def simulated_world(root: Path):
    """The generator's latent world of a LEMUR-Synth dataset, re-simulated from its ``synth.json``
    (same config and seed give the same documents; checked by doc_id)."""
    import numpy as np
    import pyarrow.parquet as pq

    from lemur.data.synth import SynthConfig, build_world

    config = json.loads((root / "synth.json").read_text())["config"]
    fields = {f.name for f in dataclasses.fields(SynthConfig)}
    cfg = SynthConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in fields})
    world = build_world(cfg)
    doc_id = pq.read_table(root / "docs.parquet", columns=["doc_id"]).column("doc_id").to_numpy()
    if not np.array_equal(doc_id, world.doc_id):
        raise SystemExit(
            f"{root / 'docs.parquet'}: its doc_ids differ from a re-simulation with {root / 'synth.json'}; "
            "the probe needs an unmodified LEMUR-Synth dataset"
        )
    return cfg, world


def appeal_r2(x, y, seed: int = 0) -> float:
    """Held-out R² of a standardised ridge regression ``x -> y`` (80/20 split, alpha by cross-validation)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=(0.1, 1.0, 10.0, 100.0, 1000.0)))
    model.fit(x_train, y_train)
    return float(model.score(x_test, y_test))


def subtopic_pairs(world, n_pairs: int = 20_000, seed: int = 0):
    """``(i, j, same)``: random pairs of distinct documents of the same topic, and whether they share a sub-topic."""
    import numpy as np

    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(world.doc_id), 4 * n_pairs)
    by_topic = [np.flatnonzero(world.doc_topic == t) for t in range(int(world.doc_topic.max()) + 1)]
    j = np.array([rng.choice(by_topic[t]) for t in world.doc_topic[i]])
    keep = i != j
    i, j = i[keep][:n_pairs], j[keep][:n_pairs]
    return i, j, world.doc_subtopic[i] == world.doc_subtopic[j]


def subtopic_auc(x, pairs) -> float:
    """AUC of cos(x_i, x_j) for same-sub-topic vs other-sub-topic pairs of one topic (0.5 = no signal)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    i, j, same = pairs
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return float(roc_auc_score(same, (x[i] * x[j]).sum(1))) if 0 < same.sum() < len(same) else float("nan")


def content_ceilings(world) -> tuple:
    """The signals read off the content: appeal-word counts (their valences are what the regression learns),
    and each document's bag of topic words."""
    import numpy as np

    n = len(world.doc_id)
    appeal = np.zeros((n, max(len(world.appeal_words), 1)), np.float32)
    index = {int(w): k for k, w in enumerate(world.appeal_words)}
    for d in range(n):
        for w in world.ocr[d]:
            if int(w) in index:
                appeal[d, index[int(w)]] += 1
    topic_words = {int(w): k for k, w in enumerate(np.unique(world.topic_words))}
    bag = np.zeros((n, len(topic_words)), np.float32)
    for d in range(n):
        for w in np.concatenate([world.title[d], world.ocr[d], world.asr[d], world.cover[d]]):
            if int(w) in topic_words:
                bag[d, topic_words[int(w)]] += 1
    return appeal, bag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(parser)
    parser.add_argument("--data", type=Path, help="dataset folder (default: LEMUR-Synth --preset under data/)")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a checkpoint whose document encoder is probed (repeatable)",
    )
    parser.add_argument("--tag", default="", help="results file name signal-probe-<tag>-<date>-cpu.*")
    add_run_args(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    warnings.filterwarnings("ignore")
    import torch

    from lemur.systems.ranker import load_encoders

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from taste_probe import document_vectors

    named = []
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--checkpoint {item!r}: expected NAME=PATH of an existing checkpoint file")
        named.append((name, path))
    root = args.data or ensure_data(args.preset)
    cfg, world = simulated_world(root)
    if not cfg.n_appeal_words or cfg.n_subtopics < 2:
        raise SystemExit(
            f"{root}: the dataset has no planted signals (n_appeal_words={cfg.n_appeal_words}, "
            f"n_subtopics={cfg.n_subtopics}); use --preset small"
        )
    pairs = subtopic_pairs(world)
    appeal_bag, topic_bag = content_ceilings(world)
    results = [
        {
            "encoder": "content (ceiling)",
            "appeal_r2": appeal_r2(appeal_bag, world.doc_appeal),
            "subtopic_auc": subtopic_auc(topic_bag, pairs),
        }
    ]
    torch.manual_seed(0)
    model, dm = build(args.recipe, ["--data.init_args.root", str(root), "--data.init_args.num_workers", "0"])
    vectors = [("random init", None, document_vectors(model, dm))]
    for name, path in named:
        load_encoders(model, path)
        vectors.append((name, path, document_vectors(model, dm)))
    for name, path, x in vectors:
        results.append(
            {
                "encoder": name,
                "checkpoint": path or "",
                "appeal_r2": appeal_r2(x, world.doc_appeal),
                "subtopic_auc": subtopic_auc(x, pairs),
            }
        )
    for r in results:
        print(
            f"{r['encoder']:>28}: appeal R² {r['appeal_r2']:.3f}, same-sub-topic cosine AUC {r['subtopic_auc']:.3f}",
            flush=True,
        )
    payload = {
        "benchmark": "signal_probe",
        "machine": machine("cpu"),
        "recipe": args.recipe,
        "data": str(root),
        "docs": len(world.doc_id),
        "subtopic_pairs": len(pairs[0]),
        "rows": results,
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write("signal-probe" + (f"-{args.tag}" if args.tag else ""), payload, "cpu", args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["encoder", "appeal_r2", "subtopic_auc", "checkpoint"], extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(max(9, 2.2 * len(results) + 3), 4))
    names = [r["encoder"] for r in results]
    for ax, key, title, floor in (
        (axes[0], "appeal_r2", "appeal: held-out R² of a ridge probe", 0.0),
        (axes[1], "subtopic_auc", "sub-topic: same-topic cosine AUC", 0.5),
    ):
        ax.bar(range(len(results)), [r[key] for r in results], color="tab:blue")
        ax.axhline(floor, color="gray", ls="--")
        ax.set_xticks(range(len(results)), names, rotation=25, ha="right")
        ax.set(ylim=(min(0.0, floor), 1.0), title=title)
    save_figure(fig, path.with_suffix(".png"))
    print(f"wrote {path} (+ .csv, .png)")


if __name__ == "__main__":
    main()
