"""The replicated and the sharded bank under Lightning DDP on CPU (2 processes, gloo), through the real
`lemur` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from lemur.data.synth import PRESETS, generate


def _failure(stderr: str) -> str:
    """What a failed 2-process run printed: every rank's error lines (the other rank's are often far above
    the tail, which only says that its peer closed the connection), then the tail."""
    lines = [line for line in stderr.splitlines() if "Error" in line or "error:" in line or "lemur:" in line]
    return "\n".join(lines[-30:]) + "\n---- tail ----\n" + stderr[-3000:]


REPO = Path(__file__).resolve().parents[2]

BANK = """
model:
  init_args:
    memory_bank:
      class_path: lemur.memory.BANK_CLASS
      init_args: {capacity: 400, dim: 128}
    similarity:
      class_path: lemur.sequence.CosineSimilarityFeatures
      init_args: {max_len: 8}
    sampling: {forward: 1.0, backward: 1.0}
trainer:
  callbacks:
    - class_path: bank_probe.SaveBankPerRank
      init_args: {dirpath: OUT}
"""


def _fit(
    tmp_path: Path,
    name: str,
    devices: int,
    batch_size: int,
    lr: float,
    extra: list[str],
    bank: str = "ReplicatedMemoryBank",
) -> tuple[list[dict], list[dict]]:
    out = tmp_path / name
    override = tmp_path / f"{name}.yaml"
    override.write_text(BANK.replace("OUT", str(out)).replace("BANK_CLASS", bank))
    cmd = [
        str(Path(sys.executable).with_name("lemur")),
        "fit",
        "-c",
        str(REPO / "recipes/lemur.yaml"),
        "-c",
        str(REPO / "recipes/tiny.yaml"),
        "-c",
        str(override),
        "--data.init_args.root",
        str(tmp_path / "tiny"),
        "--data.init_args.batch_size",
        str(batch_size),
        "--model.init_args.optimizer.init_args.lr",
        str(lr),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        str(devices),
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--test_after_fit",
        "false",
        "--trainer.default_root_dir",
        str(out / "runs"),
        *extra,
    ]
    if devices > 1:
        cmd += ["--trainer.strategy", "ddp"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, _failure(done.stderr)
    banks = [torch.load(out / f"bank-rank{r}.pt") for r in range(devices)]
    banks[0]["global"] = torch.load(out / "bank-global.pt")
    metrics = [json.loads((out / f"metrics-rank{r}.json").read_text()) for r in range(devices)]
    return banks, metrics


BANK_CALLBACK = """
trainer:
  callbacks+:
    - class_path: lemur.callbacks.MemoryBankCallback
      init_args: {warm_start: true, refresh_every_n_steps: 2, refresh_budget: 16, export: true, output_dir: OUT}
"""

EPOCH = [
    "--trainer.max_steps",
    "-1",
    "--trainer.max_epochs",
    "1",
    "--trainer.val_check_interval",
    "1.0",
    "--trainer.limit_val_batches",
    "1.0",
]


@pytest.mark.slow
def test_ddp_ranks_keep_identical_banks_and_match_one_process(tmp_path: Path) -> None:
    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)

    # Training for real (lr > 0): after every step both ranks hold the same bank, bit for bit.
    banks, metrics = _fit(tmp_path, "ddp-train", devices=2, batch_size=16, lr=1e-3, extra=["--trainer.max_steps", "6"])
    assert metrics[0]["world_size"] == 2 and metrics[0]["global_step"] == 6
    assert int(banks[0]["written_mask"].sum()) > 0
    for name in ("table", "written_mask", "last_write"):  # `reads` counts each rank's own lookups
        assert torch.equal(banks[0][name], banks[1][name]), name

    # Same global batch (2 x 16 vs 1 x 32) over one epoch with lr = 0, so the weights stay equal
    # and only the distribution differs: the same documents end up written with the same vectors,
    # and validation metrics agree. Tolerances: vectors 1e-5 (the same encoder on batches of other
    # padding widths), AUC/QAUC 0.01 (DDP's sampler pads the validation set to a multiple of 2 by
    # repeating rows, so one or two rows count twice).
    epoch = EPOCH
    ddp, ddp_metrics = _fit(tmp_path, "ddp-lr0", devices=2, batch_size=16, lr=0.0, extra=epoch)
    one, one_metrics = _fit(tmp_path, "one-lr0", devices=1, batch_size=32, lr=0.0, extra=epoch)
    assert torch.equal(ddp[0]["written_mask"], one[0]["written_mask"])
    written = one[0]["written_mask"]
    torch.testing.assert_close(ddp[0]["table"][written], one[0]["table"][written], atol=1e-5, rtol=1e-5)
    for key in ("val/auc", "val/qauc"):
        assert abs(ddp_metrics[0]["metrics"][key] - one_metrics[0]["metrics"][key]) < 0.01, key


@pytest.mark.slow
def test_ddp_sharded_bank_matches_the_replicated_bank(tmp_path: Path) -> None:
    """`lemur fit --trainer.strategy ddp --trainer.devices 2` with ShardedMemoryBank: each rank holds half of
    the table, and after one epoch at lr = 0 the gathered bank is the replicated bank's, bit for bit, with the
    bank callback's warm start, refresh and export on; the validation metrics agree within the tolerance of
    the test above (they are in fact computed from the same vectors)."""
    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    runs = {}
    for name, bank in (("replicated", "ReplicatedMemoryBank"), ("sharded", "ShardedMemoryBank")):
        # the bank callback too: warm start, a budgeted refresh every 2 steps and the Parquet export
        callback = tmp_path / f"{name}-callback.yaml"
        callback.write_text(BANK_CALLBACK.replace("OUT", str(tmp_path / name / "export")))
        runs[name] = _fit(tmp_path, name, 2, 16, 0.0, [*EPOCH, "-c", str(callback)], bank=bank)
    (rep, rep_metrics), (shard, shard_metrics) = runs["replicated"], runs["sharded"]
    exports = [pq.read_table(tmp_path / name / "export" / "memory_bank.parquet") for name in runs]
    assert exports[0].equals(exports[1]) and all(exports[0]["written"].to_pylist())  # warm start: every document
    assert shard[0]["table"].shape == (200, 128) and rep[0]["table"].shape == (400, 128)  # 1/W per rank
    assert int(rep[0]["written_mask"].sum()) > 0
    for name in ("table", "written_mask", "last_write"):
        assert torch.equal(shard[0]["global"][name], rep[0]["global"][name]), name
    for key in ("val/auc", "val/qauc"):
        assert abs(shard_metrics[0]["metrics"][key] - rep_metrics[0]["metrics"][key]) < 0.01, key


@pytest.mark.slow
def test_contributing_examples_train_under_ddp(tmp_path: Path) -> None:
    """examples/my_pkg (CONTRIBUTING.md) with 2 processes: a decoder that ignores `query` must not leave the
    global token's parameters unused ("parameters that were not used in producing the loss")."""
    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    cmd = [
        str(Path(sys.executable).with_name("lemur")),
        "fit",
        "-c",
        str(REPO / "recipes/lemur.yaml"),
        "-c",
        str(REPO / "recipes/tiny.yaml"),
        "-c",
        str(REPO / "examples/my_override.yaml"),
        "--data.init_args.root",
        str(tmp_path / "tiny"),
        "--data.init_args.batch_size",
        "16",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.max_steps",
        "2",
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--test_after_fit",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "examples"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, _failure(done.stderr)
    assert "max_steps=2` reached" in done.stderr
