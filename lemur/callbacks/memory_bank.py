"""MemoryBankCallback: warm start, budgeted refresh, staleness/coverage curves, PNG and Parquet export.

The bank itself is written by the model's training step (the batch's freshly encoded target
documents); this callback does what happens around that: filling the bank before training,
re-encoding stale entries on a schedule (the "dynamic update schedule" the LEMUR authors name
as future work), and reporting how fresh and how complete the bank is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

STAT_NAMES = (
    "staleness",
    "coverage_short",
    "coverage_long",
    "coverage_target",
    "encoded_rows",
    "written_share",
    "refresh_staleness",
)


class MemoryBankCallback(L.Callback):
    """Manages the ``memory_bank`` of a ``LemurRanker`` during fit.

    Logged as ``bank/<name>`` (MLflow curves, every ``trainer.log_every_n_steps``):

    * ``staleness``: mean cosine between the fresh encoder output and the cached entry it
      replaces, over the step's re-encoded documents that were already in the bank (1 = exact).
    * ``refresh_staleness``: the same over the entries a refresh re-encodes (the stalest ones).
    * ``coverage_short`` / ``coverage_long``: share of (non-padding) history lookups that hit a
      written entry; ``coverage_target``: share of the batch's documents already in the bank.
    * ``encoded_rows``: share of rows whose target document ran the encoder this step.
    * ``written_share``: share of the dataset's documents present in the bank.

    Args:
        warm_start: encode every document into the bank before the first training step (with a
            progress bar). Skipped when resuming with a bank that already has entries.
        batch_size: documents per encoder call for warm start and refresh.
        refresh_every_n_steps: every this many optimizer steps, re-encode up to
            ``refresh_budget`` entries chosen by ``refresh_policy``; 0 = never.
        refresh_budget: documents re-encoded per refresh (the compute budget).
        refresh_policy: ``stalest`` (oldest write first) or ``most_read`` (most history
            lookups since their last write first).
        plot: write ``memory_bank.png`` (curves of the stats) at the end of fit, also to MLflow.
        export: write ``memory_bank.parquet`` (doc_id, written, last_write, embedding) at the end
            of fit, also to MLflow: the serving hook for bank-based scoring.
        output_dir: where the PNG/Parquet go; default: the run's folder, next to its checkpoints.
    """

    def __init__(
        self,
        warm_start: bool = False,
        batch_size: int = 512,
        refresh_every_n_steps: int = 0,
        refresh_budget: int = 0,
        refresh_policy: Literal["stalest", "most_read"] = "stalest",
        plot: bool = True,
        export: bool = False,
        output_dir: str | None = None,
    ) -> None:
        if batch_size < 1 or refresh_every_n_steps < 0 or refresh_budget < 0:
            raise ValueError(
                f"MemoryBankCallback: need batch_size >= 1, refresh_every_n_steps >= 0, refresh_budget >= 0 "
                f"(got {batch_size}, {refresh_every_n_steps}, {refresh_budget})"
            )
        if refresh_policy not in ("stalest", "most_read"):
            raise ValueError(
                f"MemoryBankCallback.refresh_policy must be 'stalest' or 'most_read', got {refresh_policy!r}"
            )
        self.warm_start, self.batch_size = warm_start, batch_size
        self.refresh_every_n_steps, self.refresh_budget, self.refresh_policy = (
            refresh_every_n_steps,
            refresh_budget,
            refresh_policy,
        )
        self.plot, self.export, self.output_dir = plot, export, output_dir
        self.history: dict[str, list[tuple[int, float]]] = {name: [] for name in STAT_NAMES}

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _bank(pl_module: L.LightningModule):
        bank = getattr(pl_module, "memory_bank", None)
        if bank is None:
            raise ValueError(
                "MemoryBankCallback is in trainer.callbacks but the model has no memory bank: "
                "set model.init_args.memory_bank or drop the callback"
            )
        return bank

    def _encode(
        self, trainer: L.Trainer, pl_module: L.LightningModule, doc_index: np.ndarray, desc: str | None
    ) -> list[float]:
        """Encode ``doc_index`` (split across ranks) and write it; returns the writes' staleness values."""
        bank = self._bank(pl_module)
        world, rank = trainer.world_size, trainer.global_rank
        step = self.batch_size * world
        mine = [np.array_split(doc_index[i : i + step], world)[rank] for i in range(0, len(doc_index), step)]
        loader = trainer.datamodule.document_dataloader(
            np.concatenate(mine) if mine else np.zeros(0, np.int64), batch_size=self.batch_size
        )
        batches = iter(loader)
        stale = []
        progress = None
        if desc and trainer.is_global_zero:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(doc_index), desc=desc, unit="doc")
        training = pl_module.training
        pl_module.eval()  # encode as at evaluation (no dropout), also when refreshing in the middle of training
        try:
            for chunk in mine:  # one collective write per chunk on every rank, even when a rank's share is empty
                vectors = torch.zeros(0, bank.dim, device=pl_module.device)
                ids = torch.zeros(0, dtype=torch.long, device=pl_module.device)
                if len(chunk):
                    batch = {k: v.to(pl_module.device) for k, v in next(batches).items()}
                    vectors, ids = pl_module.document_vectors(batch), batch["doc_index"]
                stats = bank.write(ids, vectors, step=trainer.global_step)
                if int(stats.replaced):
                    stale.append(float(stats.staleness))
                if progress is not None:
                    progress.update(len(chunk) * world)
        finally:
            pl_module.train(training)
        if progress is not None:
            progress.close()
        return stale

    def _record(
        self, trainer: L.Trainer, pl_module: L.LightningModule, values: dict[str, torch.Tensor | float]
    ) -> None:
        values = {k: v for k, v in values.items() if not (isinstance(v, float) and np.isnan(v))}
        if not values:
            return
        pl_module.log_dict(
            {f"bank/{k}": float(v) if not torch.is_tensor(v) else v.float() for k, v in values.items()},
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )
        for k, v in values.items():
            v = float(v)
            if not np.isnan(v):
                self.history.setdefault(k, []).append((trainer.global_step, v))

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bank = self._bank(pl_module)
        if self.warm_start and bank.num_written() == 0:
            num_docs = trainer.datamodule.num_docs
            with torch.no_grad():
                self._encode(trainer, pl_module, np.arange(num_docs, dtype=np.int64), desc="memory bank warm start")
            rank_zero_info(f"memory bank warm start: {bank.num_written()} of {num_docs} documents encoded")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        bank = self._bank(pl_module)
        step = trainer.global_step
        values: dict[str, torch.Tensor | float] = {}
        if self.refresh_every_n_steps and self.refresh_budget and step % self.refresh_every_n_steps == 0:
            ids = bank.refresh_candidates(self.refresh_budget, self.refresh_policy).cpu().numpy()
            with torch.no_grad():
                stale = self._encode(trainer, pl_module, ids, desc=None)
            if stale:
                values["refresh_staleness"] = float(np.mean(stale))
        if step % max(trainer.log_every_n_steps, 1) == 0:
            values.update(pl_module.bank_stats)
            values["written_share"] = bank.num_written() / trainer.datamodule.num_docs
        if values:
            self._record(trainer, pl_module, values)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = Path(self.output_dir) if self.output_dir else self._run_dir(trainer)
        if self.plot:
            self._save(trainer, self._plot(out / "memory_bank.png"))
        if self.export:  # every rank takes part in gathering a sharded bank; rank 0 writes the file
            state = self._bank(pl_module).global_state()
            self._save(trainer, self._export(state, trainer.datamodule, out / "memory_bank.parquet"))

    @staticmethod
    def _run_dir(trainer: L.Trainer) -> Path:
        """The run's own folder: next to its checkpoints (runs/<experiment>/<run>/), else the log dir."""
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "dirpath", None):
            return Path(ckpt.dirpath).parent
        return Path(trainer.log_dir or trainer.default_root_dir)

    # ------------------------------------------------------------------ outputs
    @rank_zero_only
    def _plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path.parent.mkdir(parents=True, exist_ok=True)
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for name in ("staleness", "refresh_staleness"):
            if self.history.get(name):
                left.plot(*zip(*self.history[name]), label=name)
        left.set(title="staleness: cos(fresh, cached)", xlabel="step", ylim=(None, 1.0))
        for name in ("coverage_short", "coverage_long", "coverage_target", "written_share"):
            if self.history.get(name):
                right.plot(*zip(*self.history[name]), label=name)
        right.set(title="coverage", xlabel="step", ylim=(0, 1.02))
        for ax in (left, right):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    @rank_zero_only
    def _export(self, state: dict[str, torch.Tensor], datamodule, path: Path) -> Path:
        export_bank(state, datamodule.store.doc_ids, path)
        return path

    @staticmethod
    def _save(trainer: L.Trainer, path: Path | None) -> None:
        logger = trainer.logger
        if path is not None and isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifact(logger.run_id, str(path))
        if path is not None:
            rank_zero_info(f"memory bank: wrote {path}")


def export_bank(bank, doc_ids: np.ndarray, path: str | Path) -> Path:
    """Write the bank as Parquet: ``doc_id``, ``written``, ``last_write``, ``embedding`` (float32 list).

    ``bank``: a ``MemoryBank`` (one process) or the dict its ``global_state()`` returned."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    state = bank if isinstance(bank, dict) else bank.global_state()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(doc_ids)
    dim = state["table"].shape[1]
    table = state["table"][:n].float().cpu().numpy()
    pq.write_table(
        pa.table(
            {
                "doc_id": pa.array(np.asarray(doc_ids, np.int64)),
                "written": pa.array(state["written_mask"][:n].cpu().numpy()),
                "last_write": pa.array(state["last_write"][:n].cpu().numpy()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(table.reshape(-1)), dim),
            }
        ),
        path,
    )
    return path
