"""LemurCheckpoint: best + ``last.ckpt`` on a schedule and on SIGTERM/Ctrl+C, with RNG states.

Lightning's ModelCheckpoint keeps the best checkpoints by a metric and ``last.ckpt`` whenever it
saves (at validation / epoch end). For a run that may be pre-empted or stopped by hand, lemur also
wants ``last.ckpt`` refreshed every N optimizer steps, written once more when the process is asked
to stop, and enough state in it (RNG states here, the data position in the DataModule, the memory
bank in the model) that the resumed run continues exactly like an uninterrupted one.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from weakref import proxy

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

RNG_KEY = "lemur_rng_states"
RUN_KEY = "lemur_run"
"""Checkpoint key of the MLflow run that wrote it: ``{"run_id", "experiment_id", "tracking_uri"}``."""


def rng_states() -> dict:
    """The global random states: torch (CPU and every CUDA device), NumPy, Python; only tensors and
    plain Python values, so ``torch.load(weights_only=True)`` (LightningCLI reads checkpoints so) accepts them."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class LemurCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (every argument of it applies) that also keeps ``last.ckpt`` fresh for resuming.

    Args:
        last_every_n_train_steps: also write ``last.ckpt`` every this many optimizer steps
            (0 = only when ModelCheckpoint saves anyway: after validation and at the end).
            It is written atomically (a kill during the write leaves the previous one intact).
        save_on_interrupt: on SIGTERM (a scheduler pre-empting the job, ``kill``) or Ctrl+C (SIGINT),
            finish the running step, write ``last.ckpt`` and stop; the process exits with 143
            (SIGTERM) or 130 (Ctrl+C). A second Ctrl+C stops at once, without a checkpoint.

    Every checkpoint written during fit also holds the global RNG states (torch CPU/CUDA, NumPy,
    Python); a resumed fit restores them just before its first training step, so dropout and the
    p/q sampling draw the same numbers as in an uninterrupted run. Under DDP every rank restores
    rank 0's states (all ranks start from the same seed).
    """

    last_interrupt: dict | None = None
    """Class-wide record of the last interrupt in this process: ``{"signal", "step", "checkpoint"}``
    (the CLI prints the resume command from it after the trainer has unwound)."""

    def __init__(self, last_every_n_train_steps: int = 0, save_on_interrupt: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if last_every_n_train_steps < 0:
            raise ValueError(f"checkpoint.last_every_n_train_steps must be >= 0, got {last_every_n_train_steps}")
        self.last_every_n_train_steps = last_every_n_train_steps
        self.save_on_interrupt = save_on_interrupt
        self.interrupted_by: str | None = None
        """``"SIGTERM"`` or ``"SIGINT"`` once an interrupt stopped the fit."""
        self.interrupt_checkpoint: str | None = None
        """The checkpoint written on the way out (None when none was written)."""
        self._pending_rng: dict | None = None
        self._last_step_saved_last = -1
        self._previous_sigint = None
        self._sigint_seen = False

    # ------------------------------------------------------------------ schedule
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n = self.last_every_n_train_steps
        step = trainer.global_step
        if (
            n
            and step
            and step % n == 0
            and step != self._last_step_saved_last
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._save_last(trainer)

    def _save_last(self, trainer: L.Trainer) -> None:
        """Write last.ckpt without counting as "saved at this step", so a validation at the same
        step still saves its best checkpoint (ModelCheckpoint skips a step it already saved)."""
        previous = self._last_global_step_saved
        save_last, self.save_last = self.save_last, self.save_last or True
        try:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        finally:
            self.save_last = save_last
            self._last_global_step_saved = previous
        self._last_step_saved_last = trainer.global_step

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """Write ``filepath`` atomically: into ``<filepath>.partial`` in the same folder, then renamed
        over it (Lightning's own write moves a temporary file from the system temp folder, which is
        a copy, not a rename, when that is another file system)."""
        if "://" in str(filepath):
            return super()._save_checkpoint(trainer, filepath)
        partial = f"{filepath}.partial"
        trainer.save_checkpoint(partial, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        trainer.strategy.barrier("lemur_checkpoint_rename")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    # ------------------------------------------------------------------ RNG states
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if trainer.state.fn == "fit":
            checkpoint[RNG_KEY] = rng_states()
        logger = trainer.logger
        if isinstance(logger, MLFlowLogger) and trainer.is_global_zero and getattr(logger, "failure", None) is None:
            if logger.run_id:  # so `--ckpt_path` continues this MLflow run (see LemurCLI)
                checkpoint[RUN_KEY] = {
                    "run_id": logger.run_id,
                    "experiment_id": logger.experiment_id,
                    "tracking_uri": logger._tracking_uri,
                }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        self._pending_rng = checkpoint.get(RNG_KEY)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self._pending_rng is not None:  # the first step after a resume draws what the interrupted run would have
            set_rng_states(self._pending_rng)
            self._pending_rng = None

    # ------------------------------------------------------------------ signals
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning turns SIGTERM into a stop after the running step (trainer.received_sigterm);
        # route the first Ctrl+C through the same path, so it stops at a step boundary too.
        if self.save_on_interrupt and threading.current_thread() is threading.main_thread():
            self._sigint_seen = False
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        self._sigint_seen = True
        # a second Ctrl+C stops at once
        signal.signal(signal.SIGINT, self._previous_sigint or signal.default_int_handler)
        print(
            "\nlemur: Ctrl+C: finishing the current step, then writing last.ckpt and stopping "
            "(press Ctrl+C again to stop at once, without a checkpoint)",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGTERM)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) == self._on_sigint:
                signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._restore_sigint()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._restore_sigint()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException):
            return  # any other exception may have struck mid-step: the last scheduled checkpoint stays the newest
        self.interrupted_by = "SIGINT" if self._sigint_seen else "SIGTERM"
        LemurCheckpoint.last_interrupt = {
            "signal": self.interrupted_by,
            "step": trainer.global_step,
            "checkpoint": None,
        }
        if not self.save_on_interrupt or trainer.state.fn != "fit" or trainer.sanity_checking or self.dirpath is None:
            return
        if trainer.global_step == 0:
            rank_zero_info(f"lemur: {self.interrupted_by} before the first optimizer step: nothing to save")
            return
        # SIGTERMException is raised between steps (after the step, its hooks and any validation),
        # so the state written here is a clean step boundary.
        self._save_last(trainer)
        self.interrupt_checkpoint = self.last_model_path
        LemurCheckpoint.last_interrupt["checkpoint"] = self.last_model_path
        rank_zero_info(
            f"lemur: {self.interrupted_by} at global step {trainer.global_step}: wrote {self.last_model_path}"
        )
