"""StreamingReport: the per-day curves of a streaming run (see lemur.data.streaming)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lemur.callbacks.memory_bank import MemoryBankCallback

# What each day's row holds: next-day validation metrics, then the bank's last logged state.
DAY_METRICS = ("val/auc", "val/qauc", "val/gauc", "val/auc_new", "val/new_share")
BANK_METRICS = ("bank/staleness", "bank/coverage_short", "bank/coverage_long", "bank/written_share")


class StreamingReport(L.Callback):
    """After each streaming epoch (= day), records the next-day validation metrics (AUC, QAUC,
    GAUC, AUC on documents new that day, their share) and the memory bank's staleness and
    coverage; logs them to MLflow as ``stream/*`` curves with the day as step, and at the end of
    fit writes ``streaming.json`` and ``streaming.png`` next to the checkpoints (logged to the run).

    Args:
        output_dir: where the files go; default: the run's folder, next to its checkpoints.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        self.output_dir = output_dir
        self.days: list[dict] = []

    def state_dict(self) -> dict:
        return {"days": self.days}  # a restarted stream keeps the curve of its earlier days

    def load_state_dict(self, state_dict: dict) -> None:
        self.days = list(state_dict.get("days", []))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_validation_epoch_end: callbacks run that hook before the module logs its metrics
        dm = trainer.datamodule
        if trainer.sanity_checking or not hasattr(dm, "day_of_epoch"):
            return
        train, val = dm.day_of_epoch(trainer.current_epoch)
        metrics = trainer.callback_metrics
        row = {
            "epoch": trainer.current_epoch,
            "trained_days": train,
            "val_day": val,
            "global_step": trainer.global_step,
        }
        for name in DAY_METRICS + BANK_METRICS:
            if name in metrics:
                row[name] = float(metrics[name])
        # a later validation of the same day wins
        self.days = [d for d in self.days if d["epoch"] != row["epoch"]] + [row]
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics(
                {f"stream/{k.replace('/', '_')}": v for k, v in row.items() if "/" in k}, step=val
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.days:
            return
        out = Path(self.output_dir) if self.output_dir else MemoryBankCallback._run_dir(trainer)
        logger = trainer.logger
        for path in self._write(out) or []:
            if isinstance(logger, MLFlowLogger):
                logger.experiment.log_artifact(logger.run_id, str(path))

    @rank_zero_only
    def _write(self, out: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out.mkdir(parents=True, exist_ok=True)
        table = out / "streaming.json"
        table.write_text(json.dumps(self.days, indent=1))
        days = [d["val_day"] for d in self.days]
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for name in ("val/auc", "val/qauc", "val/auc_new"):
            left.plot(days, [d.get(name, math.nan) for d in self.days], marker="o", label=name)
        left.set(title="next-day validation", xlabel="validation day")
        for name in BANK_METRICS + ("val/new_share",):
            if any(name in d for d in self.days):
                right.plot(days, [d.get(name, math.nan) for d in self.days], marker="o", label=name)
        right.set(title="memory bank and new documents", xlabel="validation day", ylim=(0, 1.02))
        for ax in (left, right):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        fig.tight_layout()
        png = out / "streaming.png"
        fig.savefig(png, dpi=100)
        plt.close(fig)
        rank_zero_info(f"streaming: wrote {table} and {png}")
        return [table, png]
