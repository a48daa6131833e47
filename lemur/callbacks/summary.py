"""RunSummary: rows/s and wall time of training and evaluation, and the closing table.

Lightning's ThroughputMonitor reports windowed rates; a user comparing runs wants one
total per phase (rows, seconds, rows/s) next to the final metrics, so this is kept by hand.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only


class RunSummary(L.Callback):
    """Counts rows and wall time of fit and test; ``table()`` renders them with the metrics.

    Args:
        metrics_file: optional JSON file (``--summary.metrics_file``) for programs driving the
            CLI, e.g. ``lemur run``: written when fit starts (``status: running``, the MLflow
            run and parameter counts) and after each test (``status: tested`` + the test metrics
            and the throughput of each phase); while training, ``progress`` (optimizer step, the
            estimated total, epoch) is refreshed every ``progress_every_s`` seconds, which is how
            ``lemur run`` shows how far each run is.
        progress_every_s: seconds between two ``progress`` writes of ``metrics_file``.
        predictions_file: optional Parquet file of the test rows' scores (``score``, ``label``,
            ``session_id``, ``user_id``, ``doc_id``, ``is_new_doc``), written after each test; ``lemur
            run`` compares variants with paired bootstrap intervals over them
            (``lemur.metrics.bootstrap``). Under DDP each rank writes ``<stem>.rank<k>.parquet``.
    """

    def __init__(
        self, metrics_file: str | None = None, progress_every_s: float = 30.0, predictions_file: str | None = None
    ) -> None:
        if not progress_every_s > 0:
            raise ValueError(f"summary.progress_every_s must be > 0, got {progress_every_s!r}")
        self.phases: dict[str, dict[str, float]] = {}
        self._start: dict[str, float] = {}
        self.metrics_file = metrics_file
        self.progress_every_s = progress_every_s
        self._record: dict = {}
        self._last_progress = 0.0
        self.predictions_file = predictions_file
        self._test_rows: list[dict] = []

    @rank_zero_only
    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, **fields) -> None:
        if self.metrics_file is None:
            return
        if not self._record:
            logger = trainer.logger
            params = sum(p.numel() for p in pl_module.parameters())
            trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
            self._record = {
                "run_id": getattr(logger, "run_id", None),
                "experiment_id": getattr(logger, "experiment_id", None),
                "params": {"total": params, "trainable": trainable},
            }
        self._record.update(fields)
        path = Path(self.metrics_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self._record, indent=2))
        tmp.replace(path)  # atomic: a reader never sees half a file

    def on_fit_start(self, trainer, pl_module):
        self._write(trainer, pl_module, status="running")

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
            trainer.logger.log_metrics(
                {f"{phase}/rows_per_s": stats["rows_per_s"], f"{phase}/wall_s": stats["seconds"]},
                step=trainer.global_step,
            )

    def on_train_start(self, trainer, pl_module):
        self._begin("train")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._count(trainer, "train", batch)
        now = time.perf_counter()
        if self.metrics_file is not None and now - self._last_progress >= self.progress_every_s:
            self._last_progress = now
            total = trainer.estimated_stepping_batches
            self._write(
                trainer,
                pl_module,
                progress={
                    "step": trainer.global_step,
                    "total_steps": int(total) if math.isfinite(total) else None,
                    "epoch": trainer.current_epoch,
                    "train_seconds": round(now - self._start.get("train", now), 1),
                },
            )

    def on_train_end(self, trainer, pl_module):
        self._end(trainer, "train")

    def on_test_start(self, trainer, pl_module):
        self._begin("test")
        self._test_rows = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._count(trainer, "test", batch)
        if self.predictions_file is not None and isinstance(outputs, dict):
            self._test_rows.append({k: v.detach().cpu() for k, v in outputs.items()})

    def _write_predictions(self, trainer: L.Trainer) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        import torch

        if not self._test_rows:
            return
        path = Path(self.predictions_file)
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = {k: torch.cat([b[k] for b in self._test_rows]).numpy() for k in self._test_rows[0]}
        pq.write_table(pa.table(columns), path)
        self._test_rows = []

    def on_test_end(self, trainer, pl_module):
        self._end(trainer, "test")
        if self.predictions_file is not None:
            self._write_predictions(trainer)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        self._write(
            trainer, pl_module, status="tested", metrics=metrics, phases=self.phases, global_step=trainer.global_step
        )

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
