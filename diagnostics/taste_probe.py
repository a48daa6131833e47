"""Does a trained document encoder represent the users' hidden *text tastes*? A linear probe.

LEMUR-Synth gives every document one text taste, visible only as 1-3 marker words in its OCR field
(docs/synth.md); users like some tastes and dislike others, worth AUC 0.834 vs 0.762 for an oracle
without them. A model can only exploit tastes through its history if the document vectors carry
them, so this script encodes every document of the dataset with the document encoder of each given
checkpoint (``lemur fit`` of any recipe, or a two-stage ``ContrastivePretrainer``) and fits a
multinomial logistic regression (scikit-learn) from the vector to the taste on 80% of the
documents, scoring the other 20%. A randomly initialised encoder and the bag of marker words itself
(the ceiling: the label is read off the OCR) are the reference rows.

``--taste visual`` probes the *visual* taste instead (shown only by the cover hue; the label is
re-derived from the generator with the dataset's ``synth.json``), for recipes with an image tower
(``recipes/lemur_image.yaml``); the reference row is then the covers' mean colour and hue.

    python diagnostics/taste_probe.py --checkpoint e2e=outputs/.../last.ckpt \\
        --checkpoint two_stage=outputs/.../last.ckpt
    python diagnostics/taste_probe.py --taste visual --recipe recipes/lemur.yaml recipes/lemur_image.yaml --tag visual

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the shared script helpers
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


def visual_taste_labels(root: Path) -> tuple[list[int], list[int]]:
    """``(doc positions, visual taste)`` of the documents with a cover image. The visual taste is
    latent (only the cover hue shows it), so it is re-derived from the generator with the dataset's
    own config in ``synth.json`` (same config and seed give the same documents, checked by doc_id)."""
    import dataclasses

    import numpy as np
    import pyarrow.parquet as pq

    from lemur.data.synth import SynthConfig, build_world

    config = json.loads((root / "synth.json").read_text())["config"]
    fields = {f.name: f for f in dataclasses.fields(SynthConfig)}
    cfg = SynthConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in fields})
    world = build_world(cfg)
    docs = pq.read_table(root / "docs.parquet", columns=["doc_id", "image"])
    if not np.array_equal(docs.column("doc_id").to_numpy(), world.doc_id):
        raise SystemExit(
            f"{root / 'docs.parquet'}: its doc_ids differ from a re-simulation with {root / 'synth.json'}; "
            "--taste visual needs an unmodified LEMUR-Synth dataset"
        )
    has_image = np.asarray(docs.column("image").is_valid())
    rows = np.flatnonzero(has_image)
    return rows.tolist(), world.doc_visual_taste[rows].tolist()


def cover_colour(root: Path, rows: list[int]):
    """``[len(rows), 5]``: mean R, G, B and the mean of cos/sin of the hue of each cover (the visual
    taste's ceiling features: the generator draws the hue from the taste)."""
    import io

    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    images = pq.read_table(root / "docs.parquet", columns=["image"]).column("image")
    out = []
    for i in rows:
        img = Image.open(io.BytesIO(images[i].as_py()))
        rgb = np.asarray(img.convert("RGB"), np.float32).reshape(-1, 3) / 255.0
        hue = np.asarray(img.convert("HSV"), np.float32)[..., 0].ravel() * (2 * np.pi / 255.0)
        out.append([*rgb.mean(0), np.cos(hue).mean(), np.sin(hue).mean()])
    return np.array(out, np.float32)


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
    return {
        "accuracy": float(np.mean(clf.predict(x_test) == y_test)),
        "train_accuracy": float(clf.score(x_train, y_train)),
        "test_docs": len(y_test),
        "classes": int(len(set(y))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(parser)
    parser.add_argument("--data", type=Path, help="dataset folder (default: LEMUR-Synth --preset under data/)")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a checkpoint whose query/doc encoder weights are probed (repeatable)",
    )
    parser.add_argument(
        "--taste",
        choices=["text", "visual"],
        default="text",
        help="text: the OCR marker-word taste (label read off the text); visual: the cover-hue taste "
        "(label from re-simulating the dataset's synth.json; use an image recipe)",
    )
    parser.add_argument(
        "--tag",
        default="",
        help="results file name taste-probe-<tag>-<date>-cpu.* (so another probe does not overwrite one)",
    )
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
    rows, tastes = taste_labels(root) if args.taste == "text" else visual_taste_labels(root)
    y = np.array(tastes)
    torch.manual_seed(0)
    model, dm = build(args.recipe, ["--data.init_args.root", str(root), "--data.init_args.num_workers", "0"])
    results = []
    if args.taste == "text":
        markers = json.loads((root / "synth.json").read_text())["vocabulary"]["text_taste_markers"]
        vocab = sorted(w for words in markers for w in words)
        import pyarrow.parquet as pq

        ocr = pq.read_table(root / "docs.parquet", columns=["ocr"]).column("ocr").to_pylist()
        bag = np.array([[(ocr[i] or "").split().count(w) for w in vocab] for i in rows], dtype=np.float32)
        results.append({"encoder": "marker-word counts (ceiling)", **probe(bag, y)})
    else:
        results.append({"encoder": "cover mean colour and hue (ceiling)", **probe(cover_colour(root, rows), y)})
    results.append({"encoder": "random init", **probe(document_vectors(model, dm)[rows], y)})
    for name, path in named:
        load_encoders(model, path)
        results.append({"encoder": name, "checkpoint": path, **probe(document_vectors(model, dm)[rows], y)})
    for r in results:
        print(
            f"{r['encoder']:>32}: held-out taste accuracy {r['accuracy']:.3f} (train {r['train_accuracy']:.3f})",
            flush=True,
        )
    payload = {
        "benchmark": "taste_probe",
        "machine": machine("cpu"),
        "recipe": args.recipe,
        "data": str(root),
        "taste": args.taste,
        "labelled_docs": len(rows),
        "chance": float(np.bincount(y).max() / len(y)),
        "rows": results,
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write("taste-probe" + (f"-{args.tag}" if args.tag else ""), payload, "cpu", args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(
            f,
            fieldnames=["encoder", "accuracy", "train_accuracy", "test_docs", "classes", "checkpoint"],
            extrasaction="ignore",
        )
        w.writeheader()
        w.writerows(results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(results) + 2), 4))
    ax.bar(range(len(results)), [r["accuracy"] for r in results], color="tab:blue")
    ax.axhline(payload["chance"], color="gray", ls="--", label=f"majority class {payload['chance']:.2f}")
    ax.set_xticks(range(len(results)), [r["encoder"] for r in results], rotation=25, ha="right")
    ax.set(ylim=(0, 1), ylabel="held-out accuracy", title=f"linear probe: document vector -> {args.taste} taste")
    ax.legend()
    save_figure(fig, path.with_suffix(".png"))
    print(f"wrote {path} (+ .csv, .png)")


if __name__ == "__main__":
    main()
