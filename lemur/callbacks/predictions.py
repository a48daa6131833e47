"""Write ``lemur predict`` scores to a Parquet table."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


class ParquetPredictionWriter(BasePredictionWriter):
    """Collects the dicts ``predict_step`` returns and writes them as one Parquet file.

    Columns: every key of the returned dicts (``score``, ``session_id``, ``user_id``,
    ``doc_id``, ``label`` for ``LemurRanker``). Under DDP each rank writes
    ``<stem>.rank<k>.parquet``.

    Args:
        output_path: file to write (folders are created).
    """

    def __init__(self, output_path: str = "predictions.parquet") -> None:
        super().__init__(write_interval="epoch")
        self.output_path = Path(output_path)

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions, batch_indices) -> None:
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        if not batches:
            return
        columns = {
            key: torch.cat([b[key].detach().float() if key == "score" else b[key].detach() for b in batches])
            .cpu()
            .numpy()
            for key in batches[0]
        }
        path = self.output_path
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)
        print(f"wrote {len(next(iter(columns.values())))} predictions to {path}", flush=True)
