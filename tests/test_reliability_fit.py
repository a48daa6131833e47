"""Reliability checks that train (in this process, a few steps of a small model on hand-made data):
non-finite losses raise or are skipped and counted, Ctrl+C stops at a step boundary with a
checkpoint, MLflow breaking mid-run or an unusable/locked store never stops training."""

from __future__ import annotations

import re
import sqlite3
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lemur.cli import main
from lemur.data.datamodule import LemurDataModule, ResumableSampler

REPO = Path(__file__).resolve().parents[1]
BASE, TINY = REPO / "recipes" / "lemur.yaml", REPO / "recipes" / "tiny.yaml"
SMALL = """
trainer:
  max_epochs: 1
  max_steps: 6
  limit_train_batches: 6
  limit_val_batches: 0
  num_sanity_val_steps: 0
  enable_progress_bar: false
  enable_model_summary: false
model:
  init_args:
    features: {token_dim: 16, user_buckets: 200, doc_buckets: 200, cat_buckets: 50, num_cat: 1, num_dense: 1}
    query_encoder:
      class_path: lemur.encoders.TransformerTextEncoder
      init_args: {num_layers: 1, hidden_dim: 16, num_heads: 2, ffn_dim: 32, num_types: 1, max_len: 16, \
out_dim: 16, dropout: 0.0}
    doc_encoder:
      class_path: lemur.encoders.DocumentEncoder
      init_args:
        out_dim: 16
        modalities:
          text:
            class_path: lemur.encoders.TransformerTextEncoder
            init_args: {num_layers: 1, hidden_dim: 16, num_heads: 2, ffn_dim: 32, num_types: 5, max_len: 80, \
out_dim: 16, dropout: 0.0}
    memory_bank:
      class_path: lemur.memory.ReplicatedMemoryBank
      init_args: {capacity: 64, dim: 16}
    similarity:
      class_path: lemur.sequence.CosineSimilarityFeatures
      init_args: {max_len: 4}
    backbone:
      class_path: lemur.ranking.MLPBackbone
      init_args: {hidden_dims: [16], dropout: 0.0, dot_interaction: true}
data:
  init_args:
    batch_size: 8
    history: {short_len: 2, long_len: 4}
"""


@pytest.fixture
def fit(tmp_path: Path, handmade_dataset: Path, monkeypatch: pytest.MonkeyPatch):
    """``fit(*args) -> (exit status, stdout, stderr)``: ``lemur fit`` of the small recipe, in this process."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lemur"])
    monkeypatch.syspath_prepend(str(REPO / "tests" / "plugins"))
    (tmp_path / "small.yaml").write_text(SMALL)

    def run(*extra: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
        code = main(
            [
                "fit",
                "-c",
                str(BASE),
                "-c",
                str(TINY),
                "-c",
                str(tmp_path / "small.yaml"),
                "--data.init_args.root",
                str(handmade_dataset),
                "--test_after_fit",
                "false",
                *extra,
            ]
        )
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _poison_dense(monkeypatch: pytest.MonkeyPatch, user: int) -> list[int]:
    """Make one user's dense feature inf after validation; return the rows poisoned."""
    rows: list[int] = []
    setup = LemurDataModule.setup

    def poisoned(self, stage=None):
        setup(self, stage)
        bad = np.flatnonzero(self.store.user_id == user)
        self.store.dense[bad] = np.inf
        rows[:] = bad.tolist()

    monkeypatch.setattr(LemurDataModule, "setup", poisoned)
    return rows


@pytest.mark.slow
def test_nonfinite_loss_raises_by_default(fit, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _poison_dense(monkeypatch, user=500)
    code, _, err = fit("--trainer.logger", "false", capsys=capsys)
    assert code == 3, err[-2000:]
    assert re.search(r"lemur: training stopped: non-finite training loss at global step \d+", err), err[-2000:]
    assert "nonfinite_loss: skip" in err and "Traceback" not in err


@pytest.mark.slow
def test_nonfinite_loss_skip_skips_exactly_the_bad_steps(
    fit, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    poisoned = _poison_dense(monkeypatch, user=500)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        code, out, err = fit(
            "--trainer.logger",
            "false",
            "--model.init_args.nonfinite_loss",
            "skip",
            "--trainer.max_steps",
            "-1",
            capsys=capsys,
        )
    assert code == 0, err[-3000:]
    from lemur.trainer_cli import LemurCLI

    cli = LemurCLI.current
    dm = cli.datamodule
    order = list(ResumableSampler(list(range(len(dm.splits["train"]))), 8, seed=0))
    batches = [dm.splits["train"][order[i * 8 : (i + 1) * 8]] for i in range(6)]
    expected = sum(bool(np.isin(b, poisoned).any()) for b in batches)
    assert 0 < expected < 6, "the poisoned user should hit some of the 6 batches, not all"
    assert cli.model.nonfinite_steps == expected
    # A skipped step has no backward: Lightning still counts it, but the optimizer updates nothing.
    optimizer = cli.trainer.optimizers[0]
    weight = next(cli.model.backbone.mlp.parameters())
    assert int(optimizer.state[weight]["step"]) == 6 - expected
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    assert torch.isfinite(cli.model.memory_bank.table).all()
    assert re.search(rf"^nonfinite steps skipped\s+{expected}$", out, flags=re.MULTILINE), out[-1500:]
    reported = [str(w.message) for w in record if "non-finite training loss" in str(w.message)]
    assert len(reported) == 1 and "step skipped" in reported[0], "warned once; the rest is counted"


@pytest.mark.slow
def test_ctrl_c_stops_at_a_step_boundary_with_a_checkpoint(fit, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    import signal

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    signal_cb = tmp_path / "sigint.yaml"
    signal_cb.write_text(
        "trainer:\n  callbacks+:\n    - class_path: fault_injection.SignalAtStep\n      init_args: {step: 2, signal: "
        "SIGINT}\n"
    )
    code, _, err = fit("--trainer.logger", "false", "-c", str(signal_cb), capsys=capsys)
    assert code == 130, err[-3000:]
    assert "Ctrl+C: finishing the current step" in err
    match = re.search(
        r"stopped by SIGINT at global step (\d+); wrote (\S+)\n  resume with: lemur fit .* --ckpt_path (\S+)", err
    )
    assert match, err[-2000:]
    assert int(match.group(1)) == 2 and match.group(2) == match.group(3)
    ckpt = torch.load(match.group(2), map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert ckpt["LemurDataModule"]["train_sampler"]["batches_done"] == 2
    assert "lemur_rng_states" in ckpt
    assert signal.getsignal(signal.SIGINT) == before, "the Ctrl+C handler is restored"


@pytest.mark.slow
def test_mlflow_breaking_mid_run_does_not_stop_training(
    fit, capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    breaker = tmp_path / "break.yaml"
    breaker.write_text(
        f"trainer:\n  callbacks+:\n    - class_path: fault_injection.BreakFileAtStep\n      init_args: {{step: 3, "
        f"path: {db}}}\n"
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        code, out, err = fit(
            "-c", str(breaker), "--trainer.logger.init_args.tracking_uri", f"sqlite:///{db}", capsys=capsys
        )
    assert code == 0, err[-3000:]
    failures = [str(w.message) for w in record if "MLflow tracking at" in str(w.message)]
    assert len(failures) == 1, failures
    assert "lemur run summary" in out and "this run is not (completely) tracked" in out
    assert re.search(r"^last checkpoint: (runs/\d+/[0-9a-f]{32}/checkpoints/last\.ckpt)$", out, flags=re.MULTILINE), (
        out[-1500:]
    )


@pytest.mark.slow
def test_unusable_tracking_store_trains_offline(fit, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        code, out, err = fit(
            "--trainer.logger.init_args.tracking_uri",
            f"sqlite:///{tmp_path}/file/mlruns.db",
            "--trainer.max_steps",
            "2",
            capsys=capsys,
        )
    assert code == 0, err[-3000:]
    assert len([w for w in record if "MLflow tracking at" in str(w.message)]) == 1
    assert re.search(
        r"^last checkpoint: runs/offline/\d{8}-\d{6}-\d+/checkpoints/last\.ckpt$", out, flags=re.MULTILINE
    ), out[-1500:]


@pytest.mark.slow
def test_locked_sqlite_store(tmp_path: Path) -> None:
    """A real lock (another process holding the SQLite file) costs MLflow's timeout once, then nothing."""
    from lemur.tracking import SafeMLFlowLogger

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    first = SafeMLFlowLogger(experiment_name="lemur", tracking_uri=uri)
    run_id = first.run_id
    holder = sqlite3.connect(tmp_path / "mlruns.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            start = time.perf_counter()
            first.log_metrics({"train/loss": 1.0}, step=1)
            waited = time.perf_counter() - start
            start = time.perf_counter()
            for step in range(2, 50):
                first.log_metrics({"train/loss": 1.0}, step=step)
            first.finalize("success")
            after = time.perf_counter() - start
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    messages = [str(w.message) for w in record if "MLflow tracking at" in str(w.message)]
    assert len(messages) == 1 and "database is locked" in messages[0], messages
    assert after < 1.0, f"after the first failure nothing waits on the lock ({after:.1f} s)"
    print(f"locked store: first call failed after {waited:.1f} s; run {run_id}")
