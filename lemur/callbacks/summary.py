"""RunSummary: rows/s and wall time of training and evaluation, and the closing table.

Lightning's ThroughputMonitor reports windowed rates; a user comparing runs wants one
total per phase (rows, seconds, rows/s) next to the final metrics, so this is kept by hand.
"""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.utilities import rank_zero_only


class RunSummary(L.Callback):
    """Counts rows and wall time of fit and test; ``table()`` renders them with the metrics."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self._start: dict[str, float] = {}

    def _begin(self, phase: str) -> None:
        self._start[phase] = time.perf_counter()
        self.phases[phase] = {"rows": 0, "seconds": 0.0}

    def _count(self, trainer, phase: str, batch) -> None:
        # every rank sees batches of the same size (DistributedSampler), so all ranks together did world_size x
        if phase in self.phases:
            self.phases[phase]["rows"] += int(batch["label"].shape[0]) * trainer.world_size

    def _end(self, trainer: L.Trainer, phase: str) -> None:
        stats = self.phases[phase]
        stats["seconds"] = time.perf_counter() - self._start[phase]
        stats["rows_per_s"] = stats["rows"] / max(stats["seconds"], 1e-9)
        if trainer.logger is not None:
            trainer.logger.log_metrics({f"{phase}/rows_per_s": stats["rows_per_s"], f"{phase}/wall_s": stats["seconds"]}, step=trainer.global_step)

    def on_train_start(self, trainer, pl_module):
        self._begin("train")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._count(trainer, "train", batch)

    def on_train_end(self, trainer, pl_module):
        self._end(trainer, "train")

    def on_test_start(self, trainer, pl_module):
        self._begin("test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._count(trainer, "test", batch)

    def on_test_end(self, trainer, pl_module):
        self._end(trainer, "test")

    def table(self, metrics: dict[str, float]) -> str:
        """A small fixed-width table of the final metrics and the throughput of each phase."""
        lines = [f"{'metric':<22}{'value':>14}", "-" * 36]
        for name in sorted(metrics):
            lines.append(f"{name:<22}{metrics[name]:>14.5f}")
        for phase, s in self.phases.items():
            lines.append(f"{phase + ' rows':<22}{int(s['rows']):>14d}")
            lines.append(f"{phase + ' rows/s':<22}{s.get('rows_per_s', 0.0):>14.1f}")
            lines.append(f"{phase + ' wall time (s)':<22}{s['seconds']:>14.1f}")
        return "\n".join(lines)

    @rank_zero_only
    def print(self, text: str) -> None:
        print(text, flush=True)
