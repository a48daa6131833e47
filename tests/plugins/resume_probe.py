"""A test callback for the interrupt/resume tests (tests/test_resume.py).

It records, per training step, the rows of the batch and the memory bank after the step; after a
resume, the bank as restored from the checkpoint; at the end of fit, the final metrics and weights.
With ``slow_after_step`` it also sleeps ``delay_s`` after each later step and writes ``marker`` so a
test can signal the process while it is mid-epoch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch


class ResumeProbe(L.Callback):
    def __init__(self, dirpath: str, slow_after_step: int = -1, delay_s: float = 0.0) -> None:
        self.dirpath = Path(dirpath)
        self.slow_after_step, self.delay_s = slow_after_step, delay_s

    @staticmethod
    def _bank(pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        bank = pl_module.memory_bank
        return {name: getattr(bank, name).detach().cpu().clone() for name in bank.STATE}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        if trainer.global_step > 0:  # resumed: the bank as the checkpoint restored it
            torch.save(
                {"global_step": trainer.global_step, "bank": self._bank(pl_module)}, self.dirpath / "restored.pt"
            )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        step = trainer.global_step
        torch.save(self._bank(pl_module), self.dirpath / f"bank-step{step}.pt")
        with open(self.dirpath / "steps.jsonl", "a") as f:
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "epoch": trainer.current_epoch,
                        "batch_idx": batch_idx,
                        "doc_index": batch["doc_index"].tolist(),
                        "session_id": batch["session_id"].tolist(),
                        "loss": float(outputs["loss"]) if outputs is not None else None,
                    }
                )
                + "\n"
            )
        if 0 <= self.slow_after_step <= step:
            (self.dirpath / "marker").write_text(str(step))
            time.sleep(self.delay_s)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        (self.dirpath / "final.json").write_text(
            json.dumps({"global_step": trainer.global_step, "epoch": trainer.current_epoch, "metrics": metrics})
        )
        torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}, self.dirpath / "final.pt")
