"""A test callback for the sharded-bank resume test (tests/memory/test_sharded_resume.py).

Every rank takes part (the sharded bank's gathers are collectives); rank 0 writes the files: after
``slow_after_step`` a ``marker`` with the step (and every rank sleeps ``delay_s``, so the test can
kill the job mid-epoch); at the end of fit, the whole bank in document order, the model's weights and
the final metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch


class ShardedProbe(L.Callback):
    def __init__(self, dirpath: str, slow_after_step: int = -1, delay_s: float = 0.0) -> None:
        self.dirpath = Path(dirpath)
        self.slow_after_step, self.delay_s = slow_after_step, delay_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if 0 <= self.slow_after_step <= step:
            if trainer.is_global_zero:
                self.dirpath.mkdir(parents=True, exist_ok=True)
                (self.dirpath / "marker").write_text(str(step))
            time.sleep(self.delay_s)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bank = pl_module.memory_bank.global_state()
        weights = pl_module.state_dict()  # gathers the bank's shards too
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            torch.save({"bank": bank, "weights": weights}, self.dirpath / "final.pt")
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            (self.dirpath / "final.json").write_text(json.dumps({"metrics": metrics, "step": trainer.global_step}))
