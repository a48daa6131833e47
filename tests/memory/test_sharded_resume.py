"""Kill and resume with a sharded bank on 2 processes (DDP, gloo): a `lemur fit` killed with SIGKILL
mid-epoch and resumed from its last scheduled checkpoint ends with the same bank, weights and metrics
as an uninterrupted run, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lemur.data.synth import PRESETS, generate

REPO = Path(__file__).resolve().parents[2]

# Small and deterministic apart from the data order: no dropout, every document encoded (p = q = 1).
SMALL = """
trainer:
  max_epochs: -1
  max_steps: 12
  limit_train_batches: 5
  limit_val_batches: 1
  val_check_interval: 1.0
  num_sanity_val_steps: 0
  enable_progress_bar: false
  enable_model_summary: false
  logger: false
  accelerator: cpu
  devices: 2
  strategy: ddp
  callbacks+:
    - class_path: sharded_probe.ShardedProbe
      init_args: {dirpath: OUT, slow_after_step: SLOW, delay_s: 3.0}
model:
  init_args:
    features: {token_dim: 16, user_buckets: 500, doc_buckets: 500, cat_buckets: 100, num_cat: 1, num_dense: 1}
    query_encoder:
      class_path: lemur.encoders.TransformerTextEncoder
      init_args: {num_layers: 1, hidden_dim: 32, num_heads: 2, ffn_dim: 64, num_types: 1, max_len: 16, out_dim: 32}
    doc_encoder:
      class_path: lemur.encoders.DocumentEncoder
      init_args:
        out_dim: 32
        modalities:
          text:
            class_path: lemur.encoders.TransformerTextEncoder
            init_args: {num_layers: 1, hidden_dim: 32, num_heads: 2, ffn_dim: 64, num_types: 5, max_len: 80,
                        out_dim: 32}
    memory_bank:
      init_args: {capacity: 400}
    similarity:
      class_path: lemur.sequence.CosineSimilarityFeatures
      init_args: {max_len: 8}
    sampling: {forward: 1.0, backward: 1.0}
    backbone:
      class_path: lemur.ranking.MLPBackbone
      init_args: {hidden_dims: [32], dropout: 0.0, dot_interaction: true}
data:
  init_args:
    batch_size: 8
    history: {short_len: 4, long_len: 16}
checkpoint:
  last_every_n_train_steps: 3
"""


def _start(tmp: Path, name: str, slow: int, *extra: str) -> subprocess.Popen:
    override = tmp / f"{name}.yaml"
    override.write_text(SMALL.replace("OUT", str(tmp / name)).replace("SLOW", str(slow)))
    cmd = [str(Path(sys.executable).with_name("lemur")), "fit", "-c", str(REPO / "recipes/lemur.yaml"),
           "-c", str(REPO / "recipes/tiny.yaml"), "-c", str(REPO / "recipes/sharded_bank.yaml"), "-c", str(override),
           "--data.init_args.root", str(tmp / "tiny"), "--trainer.default_root_dir", str(tmp / f"runs-{name}"),
           "--test_after_fit", "false", *extra]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "plugins"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    log = open(tmp / f"{name}.log", "w")
    # its own session: SIGKILL must reach the DDP worker the launcher started, not only the launcher
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _log(tmp: Path, name: str) -> str:
    return (tmp / f"{name}.log").read_text()


@pytest.mark.slow
def test_sigkill_and_resume_with_a_sharded_bank_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    ref = _start(tmp_path, "ref", -1)
    assert ref.wait(timeout=600) == 0, _log(tmp_path, "ref")[-3000:]

    # Killed after step 7 (mid-epoch 1): the newest checkpoint is the one scheduled at step 6.
    a = _start(tmp_path, "A", 7)
    marker, end = tmp_path / "A" / "marker", time.monotonic() + 600
    while not (marker.exists() and marker.read_text()) and time.monotonic() < end:
        assert a.poll() is None, _log(tmp_path, "A")[-3000:]
        time.sleep(0.2)
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(timeout=60)
    last = list((tmp_path / "runs-A").rglob("last.ckpt"))
    assert len(last) == 1, last
    ckpt = torch.load(last[0], map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6
    bank_keys = [k for k in ckpt["state_dict"] if k.startswith("memory_bank.")]
    assert ckpt["state_dict"]["memory_bank.table"].shape == (400, 32), bank_keys  # the whole table, in order

    b = _start(tmp_path, "B", -1, "--ckpt_path", str(last[0]))
    assert b.wait(timeout=600) == 0, _log(tmp_path, "B")[-3000:]

    want, got = torch.load(tmp_path / "ref" / "final.pt"), torch.load(tmp_path / "B" / "final.pt")
    assert int(want["bank"]["written_mask"].sum()) > 0
    for name, value in want["bank"].items():
        assert torch.equal(got["bank"][name], value), name
    assert want["weights"].keys() == got["weights"].keys()
    for key, value in want["weights"].items():
        assert torch.equal(got["weights"][key], value), key
    m_ref = json.loads((tmp_path / "ref" / "final.json").read_text())
    m_b = json.loads((tmp_path / "B" / "final.json").read_text())
    assert m_ref["step"] == m_b["step"] == 12
    for key in ("val/auc", "val/qauc", "val/loss"):
        assert m_b["metrics"][key] == m_ref["metrics"][key], key
