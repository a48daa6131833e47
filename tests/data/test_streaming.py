"""Streaming training: one day per epoch, validated on the next day; state carries over; a restart
from a day's checkpoint reproduces the following day."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from lemur.data.streaming import StreamingDataModule
from lemur.data.synth import PRESETS, generate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream") / "tiny"
    generate(PRESETS["tiny"], root, progress=False)
    return root


def test_each_epoch_trains_one_day_and_validates_on_the_next(tiny: Path) -> None:
    dm = StreamingDataModule(root=str(tiny), warmup_days=2, test_days=1, num_workers=0)
    dm.setup("fit")
    assert dm.stream == [0, 1, 2, 3] and dm.stream_days == 2
    assert dm.day_of_epoch(0) == ([0, 1], 2) and dm.day_of_epoch(1) == ([2], 3)
    events_day = pq.read_table(tiny / "events.parquet", columns=["day"])["day"].to_numpy()
    for epoch in range(dm.stream_days):
        dm._select(epoch)
        trained, val = set(events_day[dm.splits["train"]].tolist()), set(events_day[dm.splits["val"]].tolist())
        assert max(trained) < min(val), "validation never sees a day training has seen"
        assert val == {dm.day_of_epoch(epoch)[1]}
        assert not set(events_day[dm.splits["test"]].tolist()) & (trained | val)
    with pytest.raises(ValueError, match="past the stream"):
        dm.day_of_epoch(2)


def test_too_many_epochs_fail_before_training(tiny: Path) -> None:
    import lightning as L

    dm = StreamingDataModule(root=str(tiny), warmup_days=1, num_workers=0)
    trainer = L.Trainer(max_epochs=9, reload_dataloaders_every_n_epochs=1, logger=False, enable_checkpointing=False)
    dm.trainer = trainer
    with pytest.raises(ValueError, match=r"trainer.max_epochs=9 is past the stream.*set trainer.max_epochs <= 3"):
        dm.setup("fit")


def _fit(tiny: Path, out: Path, extra: list[str]) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "lemur.cli",
        "fit",
        "-c",
        str(REPO / "recipes/lemur.yaml"),
        "-c",
        str(REPO / "recipes/streaming/lemur.yaml"),
        "-c",
        str(REPO / "recipes/tiny.yaml"),
        "--data.init_args.root",
        str(tiny),
        "--data.init_args.warmup_days",
        "1",
        "--trainer.max_steps",
        "-1",
        "--trainer.max_epochs",
        "3",
        "--trainer.limit_train_batches",
        "4",
        "--trainer.val_check_interval",
        "1.0",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger",
        "false",
        "--trainer.default_root_dir",
        str(out),
        "--checkpoint.dirpath",
        str(out / "checkpoints"),
        "--test_after_fit",
        "false",
        *extra,
    ]
    done = subprocess.run(cmd, cwd=out.parent, capture_output=True, text=True, timeout=900, env={**os.environ})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.mark.slow
def test_three_days_carry_state_and_restart_from_day_two(tiny: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    _fit(tiny, full, [])
    days = json.loads((full / "streaming.json").read_text())
    assert [d["val_day"] for d in days] == [1, 2, 3] and [d["trained_days"] for d in days] == [[0], [1], [2]]
    assert all("val/auc" in d and "val/qauc" in d for d in days)

    ckpts = [torch.load(full / "checkpoints" / f"day-epoch={e}.ckpt", weights_only=False) for e in range(3)]
    steps = [c["global_step"] for c in ckpts]
    assert steps[0] < steps[1] < steps[2], "the optimizer step carries over from day to day"
    written = [
        c["state_dict"]["memory_bank.written_mask"] if "memory_bank.written_mask" in c["state_dict"] else None
        for c in ckpts
    ]
    if written[0] is None:  # the bank keeps its tensors outside the buffers: find them by name
        keys = [k for k in ckpts[0]["state_dict"] if k.startswith("memory_bank.") and "written" in k]
        assert keys, sorted(k for k in ckpts[0]["state_dict"] if k.startswith("memory_bank"))
        written = [c["state_dict"][keys[0]] for c in ckpts]
    for earlier, later in zip(written, written[1:]):
        assert bool(later[earlier.bool()].all()), "entries written on earlier days stay in the bank"
        assert int(later.sum()) > int(earlier.sum()), "new documents enter the bank as they are encoded"
    opt = [c["optimizer_states"][0]["state"] for c in ckpts]
    assert opt[1] and opt[2], "the optimizer state is saved with every day"

    # restart from day 2's checkpoint (after epoch 1): day 3 comes out as in the uninterrupted stream
    again = tmp_path / "again"
    _fit(tiny, again, ["--ckpt_path", str(full / "checkpoints" / "day-epoch=1.ckpt")])
    resumed = json.loads((again / "streaming.json").read_text())
    assert [d["val_day"] for d in resumed] == [1, 2, 3]
    for key in ("val/auc", "val/qauc", "val/gauc"):
        # same seed, same data order (the sampler's position is in the checkpoint), same RNG states: on
        # CPU the restarted day matches to float round-off; 1e-4 leaves room for reduction order only
        assert resumed[-1][key] == pytest.approx(days[-1][key], abs=1e-4), key
    final_full = torch.load(full / "checkpoints" / "day-epoch=2.ckpt", weights_only=False)["state_dict"]
    final_again = torch.load(again / "checkpoints" / "day-epoch=2.ckpt", weights_only=False)["state_dict"]
    diff = max(
        float((final_full[k].float() - final_again[k].float()).abs().max())
        for k in final_full
        if final_full[k].is_floating_point()
    )
    assert diff < 1e-4, f"weights after day 3 differ by {diff}"
