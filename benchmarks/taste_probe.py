"""Does a trained document encoder represent the users' hidden *text tastes*? A linear probe.

LEMUR-Synth gives every document one text taste, visible only as 1-3 marker words in its OCR field
(docs/synth.md); users like some tastes and dislike others, worth AUC 0.834 vs 0.762 for an oracle
without them. A model can only exploit tastes through its history if the document vectors carry
them, so this script encodes every document of the dataset with the document encoder of each given
checkpoint (``lemur fit`` of any recipe, or a two-stage ``ContrastivePretrainer``) and fits a
multinomial logistic regression (scikit-learn) from the vector to the taste on 80% of the
documents, scoring the other 20%. A randomly initialised encoder and the bag of marker words itself
(the ceiling: the label is read off the OCR) are the reference rows.

    python benchmarks/taste_probe.py --checkpoint e2e=outputs/.../last.ckpt --checkpoint two_stage=outputs/.../last.ckpt

Needs scikit-learn (the `test` extra, which `make` installs).

Writes ``results/taste-probe[-<tag>]-<date>-cpu.json`` + ``.csv`` + ``.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, add_recipe_args, add_run_args, build, ensure_data, machine, save_figure, set_threads, write  # noqa: E402


def taste_labels(root: Path) -> tuple[list[int], list[int]]:
    """``(doc positions, text taste)`` of the documents whose OCR holds a marker word (the others have none visible)."""
    import pyarrow.parquet as pq

    markers = json.loads((root / "synth.json").read_text())["vocabulary"]["text_taste_markers"]
    owner = {w: t for t, words in enumerate(markers) for w in words}
    ocr = pq.read_table(root / "docs.parquet", columns=["ocr"]).column("ocr").to_pylist()
    rows, tastes = [], []
    for i, text in enumerate(ocr):
        found = {owner[w] for w in (text or "").split() if w in owner}
        if len(found) == 1:
            rows.append(i)
            tastes.append(found.pop())
    return rows, tastes


def document_vectors(model, dm, batch_size: int = 512):
    """``[num_docs, out_dim]``: every document of the dataset through ``model``'s document encoder (eval mode)."""
    import numpy as np
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, dm.num_docs, batch_size):
            ids = np.arange(start, min(start + batch_size, dm.num_docs))
            out.append(model.document_vectors(dm.store.documents(ids)).float())
    return torch.cat(out).numpy()


def probe(x, y, seed: int = 0) -> dict:
    """Held-out accuracy of a standardised multinomial logistic regression ``x -> y`` (80/20 split)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(x_train, y_train)
    return {"accuracy": float(np.mean(clf.predict(x_test) == y_test)), "train_accuracy": float(clf.score(x_train, y_train)),
            "test_docs": len(y_test), "classes": int(len(set(y)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(parser)
    parser.add_argument("--data", type=Path, help="dataset folder (default: LEMUR-Synth --preset under data/)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="a checkpoint whose query/doc encoder weights are probed (repeatable)")
    parser.add_argument("--tag", default="", help="results file name taste-probe-<tag>-<date>-cpu.* (so another probe does not overwrite one)")
    add_run_args(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    from lemur.systems.ranker import load_encoders

    named = []
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--checkpoint {item!r}: expected NAME=PATH of an existing checkpoint file")
        named.append((name, path))
    root = args.data or ensure_data(args.preset)
    rows, tastes = taste_labels(root)
    y = np.array(tastes)
    torch.manual_seed(0)
    model, dm = build(args.recipe, ["--data.init_args.root", str(root), "--data.init_args.num_workers", "0"])
    results = []
    markers = json.loads((root / "synth.json").read_text())["vocabulary"]["text_taste_markers"]
    vocab = sorted(w for words in markers for w in words)
    import pyarrow.parquet as pq

    ocr = pq.read_table(root / "docs.parquet", columns=["ocr"]).column("ocr").to_pylist()
    bag = np.array([[(ocr[i] or "").split().count(w) for w in vocab] for i in rows], dtype=np.float32)
    results.append({"encoder": "marker-word counts (ceiling)", **probe(bag, y)})
    results.append({"encoder": "random init", **probe(document_vectors(model, dm)[rows], y)})
    for name, path in named:
        load_encoders(model, path)
        results.append({"encoder": name, "checkpoint": path, **probe(document_vectors(model, dm)[rows], y)})
    for r in results:
        print(f"{r['encoder']:>32}: held-out taste accuracy {r['accuracy']:.3f} (train {r['train_accuracy']:.3f})", flush=True)
    payload = {"benchmark": "taste_probe", "machine": machine("cpu"), "recipe": args.recipe, "data": str(root),
               "labelled_docs": len(rows), "chance": float(np.bincount(y).max() / len(y)), "rows": results,
               "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:])}
    path = write("taste-probe" + (f"-{args.tag}" if args.tag else ""), payload, "cpu", args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["encoder", "accuracy", "train_accuracy", "test_docs", "classes", "checkpoint"], extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(results) + 2), 4))
    ax.bar(range(len(results)), [r["accuracy"] for r in results], color="tab:blue")
    ax.axhline(payload["chance"], color="gray", ls="--", label=f"majority class {payload['chance']:.2f}")
    ax.set_xticks(range(len(results)), [r["encoder"] for r in results], rotation=25, ha="right")
    ax.set(ylim=(0, 1), ylabel="held-out accuracy", title="linear probe: document vector -> text taste")
    ax.legend()
    save_figure(fig, path.with_suffix(".png"))
    print(f"wrote {path} (+ .csv, .png)")


if __name__ == "__main__":
    main()
