"""Test callbacks that inject faults into a running fit (tests/test_reliability_fit.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L


class SignalAtStep(L.Callback):
    """Sends ``signal`` (a name such as ``SIGINT``) to this very process after training step ``step``."""

    def __init__(self, step: int, signal: str = "SIGINT") -> None:
        self.step, self.signal = step, signal

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))


class BreakFileAtStep(L.Callback):
    """Overwrites ``path`` (e.g. the MLflow SQLite file) with garbage after training step ``step``."""

    def __init__(self, step: int, path: str) -> None:
        self.step, self.path = step, Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with open(self.path, "r+b") as f:  # in place: open connections see it too
                f.write(b"this is no longer a database" * 4096)
