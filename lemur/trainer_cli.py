"""LemurCLI: the LightningCLI behind ``lemur fit|validate|test|predict`` (see lemur/cli.py)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from lemur.callbacks.predictions import ParquetPredictionWriter
from lemur.callbacks.summary import RunSummary
from lemur.cli import tracking_uri
from lemur.data.datamodule import LemurDataModule


class RecipeToLogger(SaveConfigCallback):
    """Logs the resolved recipe as ``recipe.yaml`` in the MLflow run (SaveConfigCallback
    alone only writes a file); other loggers get the file in their log folder."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        logger = trainer.logger
        if isinstance(logger, MLFlowLogger):
            logger.experiment.log_text(logger.run_id, text, "recipe.yaml")
        else:
            # not trainer.log_dir: it is a collective under DDP, and this runs on rank 0 only
            log_dir = getattr(logger, "log_dir", None) or trainer.default_root_dir
            path = Path(log_dir) / "recipe.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


class LemurCLI(LightningCLI):
    """LightningCLI with lemur's defaults: MLflow logging, best/last checkpoints, a run summary,
    and ``--test_after_fit`` (default true) to evaluate the best checkpoint on the test days."""

    def __init__(self, args=None, run: bool = True) -> None:
        super().__init__(
            model_class=L.LightningModule,
            datamodule_class=LemurDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RecipeToLogger,
            save_config_kwargs={"save_to_log_dir": False},
            trainer_defaults={
                # checkpoints land in runs/<experiment id>/<run id>/checkpoints
                "default_root_dir": "runs",
                "logger": {
                    "class_path": "lightning.pytorch.loggers.MLFlowLogger",
                    "init_args": {"experiment_name": "lemur", "tracking_uri": tracking_uri(), "log_model": False},
                },
            },
            parser_kwargs={"description": "lemur: end-to-end multimodal recommendation. Train/evaluate with "
                           "fit|validate|test|predict -c RECIPE.yaml; prepare data with `lemur data synth|validate` "
                           "(see `lemur data --help`)."},
            args=args,
            run=run,
            auto_configure_optimizers=False,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/auc", "checkpoint.mode": "max", "checkpoint.save_last": True,
                             "checkpoint.filename": "best-{epoch}-{step}"})
        parser.add_lightning_class_args(RunSummary, "summary")
        parser.add_lightning_class_args(ParquetPredictionWriter, "predictions")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="after fit, test the best checkpoint on the test days")

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit") and self.trainer.state.status != "interrupted":
            has_best = any(isinstance(c, ModelCheckpoint) and c.best_model_path for c in self.trainer.callbacks)
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if has_best else None)
        self._report()

    def after_test(self) -> None:
        self._report()

    def _report(self) -> None:
        summary = next((c for c in self.trainer.callbacks if isinstance(c, RunSummary)), None)
        if summary is None or not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.split("/")[-1] in ("auc", "qauc", "gauc")}
        lines = ["", "lemur run summary", summary.table(metrics)]
        logger = self.trainer.logger
        if isinstance(logger, MLFlowLogger):
            lines += [
                f"MLflow run {logger.run_id} in experiment '{logger._experiment_name}' at {logger._tracking_uri}",
                f"  open it with: mlflow ui --backend-store-uri {logger._tracking_uri}",
            ]
            logger.experiment.log_text(logger.run_id, "\n".join(lines[1:]), "summary.txt")
        ckpt = next((c for c in self.trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        if ckpt is not None and ckpt.best_model_path:
            lines.append(f"best checkpoint: {ckpt.best_model_path}")
        summary.print("\n".join(lines))
