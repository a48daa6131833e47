"""Streaming training: one Lightning epoch per day, validated on the next day.

Production recommenders train incrementally on a stream of days and are judged on the day
that follows (progressive validation). Here that is plain Lightning: epoch ``e`` trains on
day ``d_e`` and validates on day ``d_e + 1``; the trainer reloads the dataloaders every epoch
(``trainer.reload_dataloaders_every_n_epochs: 1``), so model, optimizer, scheduler, memory bank
and data position simply carry over from day to day, and an epoch checkpoint is a day
checkpoint (``--ckpt_path`` of day k's checkpoint continues with day k + 1).
"""

from __future__ import annotations

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from lemur.data.datamodule import LemurDataModule
from lemur.data.schema import SchemaError


class StreamingDataModule(LemurDataModule):
    """A :class:`LemurDataModule` whose training split advances one day per epoch.

    The days before the last ``test_days`` form the stream. Epoch 0 trains on the first
    ``warmup_days`` days together (the history a production model starts from), every later
    epoch on the next single day; each epoch validates on the day after the one it trained on,
    which training has not seen. The test split (the last ``test_days`` days) is untouched.
    Run ``trainer.max_epochs`` <= the number of stream days after warm-up (``stream_days``);
    ``val_days`` is ignored (validation is always the next day).

    Args (besides those of ``LemurDataModule``):
        warmup_days: days trained together in epoch 0 (>= 1).
    """

    def __init__(self, *args, warmup_days: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if warmup_days < 1:
            raise ValueError(f"data.warmup_days must be >= 1, got {warmup_days}")
        self.warmup_days = warmup_days
        self.stream: list[int] = []
        self._day_rows: dict[int, np.ndarray] = {}

    def _split_by_day(self, day: np.ndarray, days: np.ndarray) -> None:
        super()._split_by_day(day, days)
        stream = self.days["train"] + self.days["val"]  # every day before the test days (val_days plays no part)
        if len(stream) < self.warmup_days + 1:
            raise SchemaError(
                self.root / "events.parquet",
                "day",
                f"streaming needs warmup_days + 1 = {self.warmup_days + 1} days before the {self.hparams.test_days} "
                f"test day(s) (one to train on, the next to validate on); the data has {stream}",
            )
        self.stream = stream
        self._day_rows = {d: np.flatnonzero(day == d) for d in stream}
        self._select(0)

    @property
    def stream_days(self) -> int:
        """How many epochs the stream allows: one per day after warm-up that still has a next day."""
        return len(self.stream) - self.warmup_days

    def day_of_epoch(self, epoch: int) -> tuple[list[int], int]:
        """(days trained in ``epoch``, the day it validates on)."""
        if not 0 <= epoch < self.stream_days:
            raise ValueError(
                f"streaming epoch {epoch} is past the stream: days {self.stream} allow {self.stream_days} epochs "
                f"with warmup_days={self.warmup_days}; set trainer.max_epochs <= {self.stream_days}"
            )
        last = self.warmup_days - 1 + epoch
        train = self.stream[: last + 1] if epoch == 0 else [self.stream[last]]
        return train, self.stream[last + 1]

    def _select(self, epoch: int) -> None:
        train, val = self.day_of_epoch(epoch)
        self.days["train"], self.days["val"] = train, [val]
        self.splits["train"] = np.concatenate([self._day_rows[d] for d in train])
        self.splits["val"] = self._day_rows[val]

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        trainer = getattr(self, "trainer", None)
        epochs = getattr(trainer, "max_epochs", None) if trainer is not None else None
        if stage == "fit" and epochs is not None and epochs > self.stream_days:
            raise ValueError(
                f"trainer.max_epochs={epochs} is past the stream: {self.root} has days {self.stream} before the test "
                f"day(s); with data.warmup_days={self.warmup_days} that is {self.stream_days} streaming epoch(s): "
                f"set trainer.max_epochs <= {self.stream_days}"
            )
        if trainer is not None and stage == "fit" and trainer.reload_dataloaders_every_n_epochs != 1:
            raise ValueError(
                "streaming needs trainer.reload_dataloaders_every_n_epochs: 1 (each epoch loads the next day)"
            )

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def train_dataloader(self):
        epoch = self._epoch()
        self._select(epoch)
        rank_zero_info(
            f"streaming epoch {epoch}: training on day(s) {self.days['train']} "
            f"({len(self.splits['train'])} rows), validating on day {self.days['val'][0]}"
        )
        return super().train_dataloader()

    def val_dataloader(self):
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.state.fn == "fit":
            self._select(min(self._epoch(), self.stream_days - 1))
        return super().val_dataloader()
