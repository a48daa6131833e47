"""A test callback: each rank saves its memory bank (its own tensors, and rank 0 the whole table
gathered in document order) and final metrics (for the DDP tests)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch


class SaveBankPerRank(L.Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        bank = pl_module.memory_bank
        rank = trainer.global_rank
        torch.save({name: getattr(bank, name).cpu() for name in bank.STATE}, self.dirpath / f"bank-rank{rank}.pt")
        whole = bank.global_state()  # a collective for a sharded bank: every rank calls it
        if rank == 0:
            torch.save(whole, self.dirpath / "bank-global.pt")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        (self.dirpath / f"metrics-rank{rank}.json").write_text(
            json.dumps({"metrics": metrics, "world_size": trainer.world_size, "global_step": trainer.global_step})
        )
