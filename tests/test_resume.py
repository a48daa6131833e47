"""Interrupt and resume: a `lemur fit` stopped by SIGTERM (graceful: last.ckpt written on the way
out), resumed, killed with SIGKILL (the last scheduled checkpoint survives), resumed again, ends
exactly where an uninterrupted run of the same seed ends: same batches in the same order, the same
memory bank at the checkpoint steps, the same final weights and metrics (bitwise on CPU), in one
MLflow run. Ctrl+C (SIGINT) is checked in-process; `--ckpt_path last` lookup and errors are fast.
"""

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

REPO = Path(__file__).resolve().parents[1]
BASE, TINY = REPO / "recipes" / "lemur.yaml", REPO / "recipes" / "tiny.yaml"

# A small, fast model (every component of recipes/lemur.yaml, shrunk; dropout and p/q sampling on,
# so the RNG state matters); 5 training batches per epoch so 12 steps cross two epoch boundaries.
SMALL = """
trainer:
  max_epochs: -1
  max_steps: 12
  limit_train_batches: 5
  limit_val_batches: 1
  val_check_interval: 1.0
  num_sanity_val_steps: 0
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
model:
  init_args:
    features: {token_dim: 16, user_buckets: 500, doc_buckets: 500, cat_buckets: 100, num_cat: 1, num_dense: 1}
    query_encoder:
      class_path: lemur.encoders.TransformerTextEncoder
      init_args: {num_layers: 1, hidden_dim: 32, num_heads: 2, ffn_dim: 64, num_types: 1, max_len: 16, \
out_dim: 32, dropout: 0.1}
    doc_encoder:
      class_path: lemur.encoders.DocumentEncoder
      init_args:
        out_dim: 32
        modalities:
          text:
            class_path: lemur.encoders.TransformerTextEncoder
            init_args: {num_layers: 1, hidden_dim: 32, num_heads: 2, ffn_dim: 64, num_types: 5, max_len: 80, \
out_dim: 32, dropout: 0.1}
    memory_bank:
      class_path: lemur.memory.ReplicatedMemoryBank
      init_args: {capacity: 400, dim: 32}
    similarity:
      class_path: lemur.sequence.CosineSimilarityFeatures
      init_args: {max_len: 8}
    sampling: {forward: 0.5, backward: 0.25}
    backbone:
      class_path: lemur.ranking.MLPBackbone
      init_args: {hidden_dims: [32], dropout: 0.1, dot_interaction: true}
data:
  init_args:
    batch_size: 16
    history: {short_len: 4, long_len: 16}
checkpoint:
  last_every_n_train_steps: 3
"""

PROBE = """
trainer:
  callbacks+:
    - class_path: resume_probe.ResumeProbe
      init_args: {{dirpath: {out}, slow_after_step: {slow}, delay_s: {delay}}}
"""


def _lemur() -> str:
    return str(Path(sys.executable).with_name("lemur"))


def _start(
    tmp: Path, name: str, *extra: str, slow: int = -1, delay: float = 0.0, env: dict | None = None
) -> subprocess.Popen:
    probe = tmp / f"probe-{name}.yaml"
    probe.write_text(PROBE.format(out=tmp / name, slow=slow, delay=delay))
    cmd = [
        _lemur(),
        "fit",
        "-c",
        str(BASE),
        "-c",
        str(TINY),
        "-c",
        str(tmp / "small.yaml"),
        "-c",
        str(probe),
        "--data.init_args.root",
        str(tmp / "tiny"),
        "--test_after_fit",
        "false",
        *extra,
    ]
    log = open(tmp / f"{name}.log", "w")
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def _wait_marker(proc: subprocess.Popen, marker: Path, timeout: float = 240) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if marker.exists() and marker.read_text():
            return int(marker.read_text())
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before reaching its marker"
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("timed out waiting for the run to reach its marker")


def _steps(folder: Path) -> dict[int, dict]:
    return {row["step"]: row for row in map(json.loads, (folder / "steps.jsonl").read_text().splitlines())}


def _log(tmp: Path, name: str) -> str:
    return (tmp / f"{name}.log").read_text()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("resume")
    generate(PRESETS["tiny"], tmp / "tiny", progress=False)
    (tmp / "small.yaml").write_text(SMALL)
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "plugins"), os.environ.get("PYTHONPATH", "")]),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns.db'}",
        # one thread per process: the reference run goes in parallel with the interrupted one
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return tmp, environ


@pytest.mark.slow
def test_sigterm_then_sigkill_then_resume_matches_an_uninterrupted_run(env: tuple[Path, dict]) -> None:
    tmp, environ = env
    started = time.perf_counter()
    reference = _start(
        tmp, "ref", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp / "ref-runs"), env=environ
    )

    # 1. SIGTERM mid-epoch 0: the run finishes its step, writes last.ckpt, exits 143 with the resume command.
    a = _start(tmp, "A", slow=2, delay=3.0, env=environ)
    _wait_marker(a, tmp / "A" / "marker")
    a.send_signal(signal.SIGTERM)
    assert a.wait(timeout=120) == 143, _log(tmp, "A")[-3000:]
    log_a = _log(tmp, "A")
    assert "stopped by SIGTERM at global step" in log_a and "--ckpt_path" in log_a, log_a[-2000:]
    last = list((tmp / "runs").glob("*/*/checkpoints/last.ckpt"))
    assert len(last) == 1, last
    ckpt_a = torch.load(last[0], map_location="cpu", weights_only=True)
    step_a = ckpt_a["global_step"]
    assert step_a >= 2 and step_a % 5 != 0, "the SIGTERM checkpoint is mid-epoch"
    assert ckpt_a["LemurDataModule"]["train_sampler"]["batches_done"] == step_a

    # 2. Resume (`--ckpt_path last`), cross the end of epoch 0, SIGKILL after step 7: nothing runs on the way
    #    out, so the newest checkpoint is the one scheduled at step 6 (checkpoint.last_every_n_train_steps: 3).
    b = _start(tmp, "B", "--ckpt_path", "last", slow=7, delay=5.0, env=environ)
    assert _wait_marker(b, tmp / "B" / "marker") == 7
    b.send_signal(signal.SIGKILL)
    assert b.wait(timeout=60) == -signal.SIGKILL
    log_b = _log(tmp, "B")
    run_id = last[0].parts[-3]
    assert f"continuing MLflow run {run_id}" in log_b, log_b[:2000]
    assert torch.load(last[0], map_location="cpu", weights_only=True)["global_step"] == 6

    # 3. Resume again and finish.
    c = _start(tmp, "C", "--ckpt_path", str(last[0]), env=environ)
    assert c.wait(timeout=300) == 0, _log(tmp, "C")[-3000:]
    assert reference.wait(timeout=300) == 0, _log(tmp, "ref")[-3000:]
    elapsed = time.perf_counter() - started

    ref = _steps(tmp / "ref")
    assert sorted(ref) == list(range(1, 13))
    # The same batches in the same order, with bitwise equal losses, in every piece of the interrupted run.
    pieces = {"A": range(1, step_a + 1), "B": range(step_a + 1, 8), "C": range(7, 13)}
    for name, steps in pieces.items():
        got = _steps(tmp / name)
        assert sorted(got) == list(steps), (name, sorted(got))
        for step in steps:
            assert got[step]["doc_index"] == ref[step]["doc_index"], (name, step)
            assert got[step]["loss"] == ref[step]["loss"], (name, step, got[step]["loss"], ref[step]["loss"])

    # The memory bank restored from each checkpoint is the uninterrupted run's bank at that step, bit for bit.
    for name, step in (("B", step_a), ("C", 6)):
        restored = torch.load(tmp / name / "restored.pt")
        assert restored["global_step"] == step
        expected = torch.load(tmp / "ref" / f"bank-step{step}.pt")
        assert int(expected["written_mask"].sum()) > 0
        for key, value in expected.items():
            assert torch.equal(restored["bank"][key], value), (name, key)

    # Final weights and metrics: identical on CPU (measured difference 0; tolerance 0).
    final_ref, final_c = torch.load(tmp / "ref" / "final.pt"), torch.load(tmp / "C" / "final.pt")
    assert final_ref.keys() == final_c.keys()
    for key in final_ref:
        assert torch.equal(final_ref[key], final_c[key]), key
    metrics_ref = json.loads((tmp / "ref" / "final.json").read_text())["metrics"]
    metrics_c = json.loads((tmp / "C" / "final.json").read_text())["metrics"]
    for key in ("val/auc", "val/qauc", "val/gauc", "val/loss", "train/loss"):
        assert metrics_c[key] == metrics_ref[key], (key, metrics_c[key], metrics_ref[key])

    # One MLflow run across the three processes, closed as FINISHED, with the whole loss curve.
    import mlflow

    client = mlflow.MlflowClient(environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps_logged = sorted({m.step for m in client.get_metric_history(run_id, "train/loss")})
    assert steps_logged[0] <= 1 and steps_logged[-1] >= 11
    print(f"interrupt/resume chain: {elapsed:.0f} s")
