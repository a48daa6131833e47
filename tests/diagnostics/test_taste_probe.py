"""diagnostics/taste_probe.py: taste labels come from the marker words, the probe runs on tiny and writes its files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "diagnostics"))
sys.path.insert(1, str(REPO / "benchmarks"))  # common.py, the scripts' shared helpers


def test_taste_labels_follow_the_marker_words(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from taste_probe import taste_labels

    (tmp_path / "synth.json").write_text(json.dumps({"vocabulary": {"text_taste_markers": [["aa", "bb"], ["cc"]]}}))
    ocr = ["x aa y", "cc cc", "nothing here", None, "aa cc"]  # no marker, null, and two tastes are left out
    pq.write_table(pa.table({"doc_id": list(range(5)), "ocr": ocr}), tmp_path / "docs.parquet")
    assert taste_labels(tmp_path) == ([0, 1], [0, 1])


def test_probe_runs_on_tiny_with_a_checkpoint(tmp_path: Path) -> None:
    import torch

    from lemur.data.synth import PRESETS, generate

    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from common import build

    model, _ = build(
        [str(REPO / "recipes/lemur.yaml"), str(REPO / "recipes/tiny.yaml")],
        ["--data.init_args.root", str(tmp_path / "tiny")],
    )
    ckpt = tmp_path / "enc.ckpt"
    torch.save({"state_dict": {k: v.clone() for k, v in model.state_dict().items()}}, ckpt)
    cmd = [
        sys.executable,
        str(REPO / "diagnostics/taste_probe.py"),
        "--recipe",
        "recipes/lemur.yaml",
        "recipes/tiny.yaml",
        "--data",
        str(tmp_path / "tiny"),
        "--tag",
        "smoke",
        "--checkpoint",
        f"saved={ckpt}",
        "--out",
        str(tmp_path / "out"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = (tmp_path / "out").glob("taste-probe-*.json")
    assert result.name.startswith("taste-probe-smoke-")  # --tag keeps another probe's files
    payload = json.loads(result.read_text())
    rows = {r["encoder"]: r for r in payload["rows"]}
    assert rows["marker-word counts (ceiling)"]["accuracy"] == 1.0  # the label is read off these counts
    assert set(rows) == {"marker-word counts (ceiling)", "random init", "saved"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows.values()) and payload["labelled_docs"] > 50
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
    bad = subprocess.run(
        cmd[:-4] + ["--checkpoint", "x=/no/such.ckpt"], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert bad.returncode != 0 and "expected NAME=PATH of an existing checkpoint file" in bad.stderr


def test_visual_taste_labels_come_from_the_generator(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow.parquet as pq
    from taste_probe import cover_colour, visual_taste_labels

    from lemur.data.synth import PRESETS, simulate

    _, _, world = simulate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    rows, tastes = visual_taste_labels(tmp_path / "tiny")
    has_image = np.asarray(
        pq.read_table(tmp_path / "tiny" / "docs.parquet", columns=["image"]).column("image").is_valid()
    )
    # tiny has a few imageless docs
    assert rows == np.flatnonzero(has_image).tolist() and 0 < len(rows) < len(world.doc_id)
    assert tastes == world.doc_visual_taste[rows].tolist()
    colour = cover_colour(tmp_path / "tiny", rows[:50])
    assert colour.shape == (50, 5) and np.all(np.abs(colour) <= 1.0)
    # the taste is the hue: documents of one taste have closer mean hue directions than of two tastes
    hue = np.arctan2(colour[:, 4], colour[:, 3])
    same = [
        abs(np.angle(np.exp(1j * (hue[i] - hue[j])))) for i in range(50) for j in range(i) if tastes[i] == tastes[j]
    ]
    other = [
        abs(np.angle(np.exp(1j * (hue[i] - hue[j])))) for i in range(50) for j in range(i) if tastes[i] != tastes[j]
    ]
    assert np.mean(same) < 0.5 * np.mean(other)
    pq.write_table(pq.read_table(tmp_path / "tiny" / "docs.parquet").slice(1), tmp_path / "tiny" / "docs.parquet")
    with pytest.raises(SystemExit, match="docs.parquet.*synth.json"):
        visual_taste_labels(tmp_path / "tiny")  # a modified dataset is named, not mislabelled
