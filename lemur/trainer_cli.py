"""LemurCLI: the LightningCLI behind ``lemur fit|validate|test|predict`` (see lemur/cli.py).

Reliability (docs/reliability.md): ``last.ckpt`` every ``--checkpoint.last_every_n_train_steps``
steps and on SIGTERM / Ctrl+C; ``--ckpt_path last`` finds the newest one and continues its MLflow
run; MLflow failures never stop training (:mod:`lemur.tracking`); a bad recipe or command line
exits with status 2 and a message naming the key, the value and, when it can, the file and line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import traceback
import warnings
from pathlib import Path

import lightning as L
import torch
from jsonargparse import ArgumentError, Namespace, set_parsing_settings
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from omegaconf.errors import OmegaConfBaseException

from lemur.callbacks.predictions import ParquetPredictionWriter
from lemur.callbacks.resume import RUN_KEY, LemurCheckpoint
from lemur.callbacks.summary import RunSummary
from lemur.cli import tracking_uri
from lemur.data.datamodule import LemurDataModule
from lemur.data.schema import SchemaError
from lemur.encoders.base import TextEncoder
from lemur.run_record import run_name, run_params, run_tags

DEFAULT_LAST_EVERY_N_TRAIN_STEPS = 200
EXIT_BAD_INPUT, EXIT_NONFINITE, EXIT_SIGINT, EXIT_SIGTERM = 2, 3, 130, 143


class RecipeError(ValueError):
    """A recipe or command line that cannot become a run. The message names the key and the
    value and, when they can be found, the recipe file and line."""


class RecipeToLogger(SaveConfigCallback):
    """Logs the resolved recipe as ``recipe.yaml`` in the MLflow run (SaveConfigCallback
    alone only writes a file); other loggers get the file in their log folder. Every logger gets the
    recipe's settings as flat params with readable prefixes (:func:`lemur.run_record.run_params`)."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import yaml

        text = self.parser.dump(self.config, skip_none=False)
        params = run_params(yaml.safe_load(text) or {})
        for each in trainer.loggers:
            each.log_hyperparams(params)
        logger = trainer.logger
        if isinstance(logger, MLFlowLogger):
            try:
                logger.experiment.log_text(logger.run_id, text, "recipe.yaml")
            except Exception as err:  # noqa: BLE001 - a plain MLFlowLogger may fail: tracking never stops training
                L.pytorch.utilities.rank_zero_warn(f"could not log recipe.yaml to MLflow ({err}); training goes on")
        else:
            # not trainer.log_dir: it is a collective under DDP, and this runs on rank 0 only
            log_dir = getattr(logger, "log_dir", None) or trainer.default_root_dir
            path = Path(log_dir) / "recipe.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


# ---------------------------------------------------------------------------- checkpoints
def find_last_checkpoint(default_root_dir: str | Path, dirpath: str | Path | None = None) -> Path | None:
    """The newest ``last*.ckpt``: in ``dirpath`` when set, else under ``default_root_dir`` in lemur's
    layouts (``<root>/<experiment>/<run>/checkpoints/`` with MLflow, ``<root>/checkpoints/`` without)."""
    if dirpath:
        candidates = list(Path(dirpath).glob("last*.ckpt"))
    else:
        root = Path(default_root_dir)
        candidates = list(root.glob("checkpoints/last*.ckpt")) + list(root.glob("*/*/checkpoints/last*.ckpt"))
    candidates = [c for c in candidates if c.is_file()]
    return max(candidates, key=lambda c: c.stat().st_mtime) if candidates else None


def checkpoint_run(path: Path) -> dict:
    """The MLflow run recorded in a checkpoint by LemurCheckpoint (``{}`` if none); memory-mapped, so cheap."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001
        raise RecipeError(f"--ckpt_path {path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    return {"global_step": ckpt.get("global_step"), **(ckpt.get(RUN_KEY) or {})}


# ---------------------------------------------------------------------------- error messages
# jsonargparse raises one ArgumentError whose text repeats every level it tried (each 'Parser key "..."', the
# Union subtypes, the given value); underneath, __cause__ chains one exception per level down to the real
# cause. It records neither a structured key path nor a file or line (recipes are read with yaml.safe_load,
# which drops line numbers), so lemur (1) takes the key path and the innermost cause from that chain, and
# (2) finds where the key is written by reading the -c files again with yaml.compose, which keeps lines.
# Step (1) relies on a few phrases of jsonargparse's wording, listed here: check them when upgrading it.
_PARSER_KEY = re.compile(r'^Parser key "([\w.]+)"')  # one nesting level: 'Parser key "model"' > '"backbone"'
_OPTION = re.compile(r"option '([\w.]+)'", re.IGNORECASE)  # a misspelt key: "... does not accept option 'x'"
_UNRECOGNIZED = re.compile(r"unrecognized arguments: --([\w.]+)=(\S+)")  # a misspelt --key on the command line
_GOT_VALUE = re.compile(r"Got value: (?:Namespace\(class_path='([\w.]+)'.*|(.{1,99}))$", re.MULTILINE)
# lemur's own messages name settings as `key=value` ("model.memory_bank.dim=48 != ...") or "<key> must be ...,
# got <value>"; torch names a bad size; omegaconf names the setting of a broken interpolation `full_key: fit.x`.
_KEY_VALUE = re.compile(r"\b([a-z_][\w.]*\.\w+)=([\w.\-+]+)")
_MUST_BE = re.compile(r"\b([a-z_]\w*) must be [^\n]*?, got '?(-?[\w.]+)")
_NEGATIVE_SIZE = re.compile(r"negative dimension (-\d+)")
_FULL_KEY = re.compile(r"full_key: (?:fit|validate|test|predict)\.([\w.]+)")
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")


def _raised_in_jsonargparse(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and f"{os.sep}jsonargparse{os.sep}" in frames[-1].filename


def _culprits(err: BaseException) -> tuple[str, str, list[tuple[str, str | None]]]:
    """``(key path, cause, [(key, value or None), ...])`` of an error raised while parsing or building."""
    chain = [err]
    while chain[-1].__cause__ is not None and len(chain) < 50:
        chain.append(chain[-1].__cause__)
    keys = [m.group(1) for e in chain if (m := _PARSER_KEY.match(str(e)))]
    path = ".".join(k for i, k in enumerate(keys) if i == 0 or k != keys[i - 1])
    # the cause: the first exception a component raised (jsonargparse wraps instantiation errors in its own), else
    # the innermost of jsonargparse's own ("Expected a <class 'int'>. Got value: lots")
    cause = str(next((e for e in chain if not _raised_in_jsonargparse(e)), chain[-1])).strip()
    text = "\n".join(str(e) for e in chain)
    leaf = keys[-1] if keys else ""
    pairs: list[tuple[str, str | None]] = [(k, None) for k in _OPTION.findall(text)]
    pairs += [(k, v) for k, v in _UNRECOGNIZED.findall(text)]
    if leaf and (got := _GOT_VALUE.search(cause) or _GOT_VALUE.search(text)):
        pairs.append((f"{leaf}.class_path", got.group(1)) if got.group(1) else (leaf, got.group(2).strip("'\" ")))
    pairs += _KEY_VALUE.findall(cause) + _MUST_BE.findall(cause) + [("", v) for v in _NEGATIVE_SIZE.findall(cause)]
    pairs += [(k, None) for k in _FULL_KEY.findall(cause)]
    if leaf and not pairs:
        pairs.append((leaf, None))
    return path, cause, pairs


def _config_files(argv: list[str]) -> list[str]:
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-c", "--config")]
    return files + [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]


def _yaml_leaves(text: str) -> list[tuple[str, str, int]]:
    """``(dotted key without init_args, scalar value or "", line)`` of every setting in a YAML document."""
    import yaml

    out: list[tuple[str, str, int]] = []

    def walk(node, path: list[str]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                if not isinstance(value, yaml.ScalarNode):  # a mapping or list: blame its key line
                    out.append((".".join(path + [name]), "", key.start_mark.line + 1))
                walk(value, path if name == "init_args" else path + [name])
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, path)
        elif isinstance(node, yaml.ScalarNode):
            out.append((".".join(path), str(node.value), node.start_mark.line + 1))

    with contextlib.suppress(yaml.YAMLError):
        walk(yaml.compose(text), [])
    return out


def _matches(path: str, value: str, key: str, want: str | None) -> bool:
    tail = key.replace(".init_args", "")
    if not key or not (path == tail or path.endswith("." + tail)):  # no key: a value alone, held by any setting
        return not key and want is not None and value == want
    same_class = tail.endswith("class_path") and want is not None and value.split(".")[-1] == want.split(".")[-1]
    return want is None or value == want or same_class


def _locate(pairs: list[tuple[str, str | None]], argv: list[str]) -> list[str]:
    """Where the blamed settings are written: ``file:line: key: value`` or ``command line: --key value``; a key
    blamed without a value is shown where it is last written (the place that wins)."""
    written: list[tuple[str, str, str]] = []  # (dotted key without init_args, value, where it is written)
    for name in _config_files(argv):
        try:
            leaves = _yaml_leaves(Path(name).read_text())
        except OSError:
            continue
        written += [
            (path, value, f"{name}:{line}: {path}{': ' + value if value else ''}") for path, value, line in leaves
        ]
    for i, arg in enumerate(argv):
        if arg.startswith("--") and arg != "--config":
            key, sep, value = arg[2:].partition("=")
            value = value if sep else (argv[i + 1] if i + 1 < len(argv) else "")
            written.append((key.replace(".init_args", ""), value, f"command line: --{key} {value}"))
    found = []
    for key, want in pairs:
        hits = [where for path, value, where in written if _matches(path, value, key, want)]
        found += hits if want is not None else hits[-1:]
    return list(dict.fromkeys(found))[:6]


def explain(err: BaseException, argv: list[str]) -> str:
    """The cause of a parsing/instantiation error, the key it concerns and where that key is written."""
    path, cause, pairs = _culprits(err)
    text = "\n  ".join(line.strip() for line in cause.splitlines() if line.strip())
    if path and not text.startswith(path):
        text = f"{path}: {text}"
    where = _locate(pairs, argv)
    if where:
        text += "\n  where: " + "\n         ".join(where)
    elif files := _config_files(argv):
        text += f"\n  recipes: {', '.join(files)}"
    if missing := _NO_MODULE.search(cause):
        text += "\n  " + import_hint(missing.group(1))
    return text


def import_hint(module: str) -> str:
    """What to do when a class_path's module (or something it imports) is not importable."""
    top = module.split(".")[0]
    text = (
        f"hint: a class_path's package must be importable by the Python that runs lemur ({sys.executable}): "
        f"install it (`pip install -e /path/to/your/package`) or put the folder holding '{top}' on PYTHONPATH"
    )
    if (Path.cwd() / top).is_dir() or (Path.cwd() / f"{top}.py").is_file():
        text += f" (./{top} is in this folder, which is not on the path: run `PYTHONPATH=. lemur ...`)"
    return text


# ---------------------------------------------------------------------------- the CLI
class _NoLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def _class_nodes(node):
    """Every ``class_path`` / ``init_args`` node of a parsed config, depth first."""
    if isinstance(node, Namespace):
        if isinstance(node.get("class_path"), str):
            yield node
        for value in vars(node).values():
            yield from _class_nodes(value)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _class_nodes(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _class_nodes(value)


def _import_class(path: str):
    import importlib

    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None  # instantiation reports it, naming the key


class LemurCLI(LightningCLI):
    """LightningCLI with lemur's defaults: MLflow logging that never stops training, best/last
    checkpoints (``last.ckpt`` also every ``checkpoint.last_every_n_train_steps`` steps and on
    SIGTERM/Ctrl+C), a run summary, and ``--test_after_fit`` (default true) to evaluate the best
    checkpoint on the test days. ``--ckpt_path last`` resumes the newest ``last.ckpt``."""

    current: LemurCLI | None = None

    def __init__(self, args=None, run: bool = True) -> None:
        LemurCLI.current = self
        # LemurDataModule resumes mid-epoch exactly through its own state_dict (ResumableSampler),
        # which Lightning's check for a stateful DataLoader does not see.
        warnings.filterwarnings(
            "ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended"
        )
        # model.nonfinite_loss: skip returns None from training_step and reports the skip itself
        warnings.filterwarnings("ignore", message=r"`training_step` returned `None`")
        # Lightning 2.6 advertises its cloud logger ("Tip: ... try installing litlogger") on every run; lemur
        # logs to MLflow: a logging filter drops that one record
        _rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        if not any(isinstance(f, _NoLitLoggerTip) for f in _rank_zero_log.filters):
            _rank_zero_log.addFilter(_NoLitLoggerTip())
        self._argv = list(sys.argv[1:] if args is None else args)
        self.resumed_from: Path | None = None
        # omegaconf+: recipes may interpolate (`dim: ${model.init_args.doc_encoder.init_args.out_dim}`), resolved
        # once every -c file and --key is merged, so a width set by a later file or the command line reaches
        # every setting that refers to it. jsonargparse resolves from the root of the whole command
        # (`fit.model...`); omegaconf_absolute_to_relative_paths rewrites a recipe's absolute paths relative
        # to where they are written, so recipes need not name the subcommand.
        set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
        strict = {"exit_on_error": False, "parser_mode": "omegaconf+"}
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
                # RecipeToLogger logs the whole recipe as prefixed params (lemur.run_record); Lightning's own
                # logging of the modules' hparams would add unprefixed duplicates and `_instantiator`
                "enable_autolog_hparams": False,
                "logger": {
                    "class_path": "lemur.tracking.SafeMLFlowLogger",
                    "init_args": {"experiment_name": "lemur", "tracking_uri": tracking_uri(), "log_model": False},
                },
            },
            parser_kwargs={
                "description": "lemur: end-to-end multimodal recommendation. Train/evaluate with "
                "fit|validate|test|predict -c RECIPE.yaml; run suites of recipes x seeds with `lemur run SUITE.yaml`; "
                "prepare data with `lemur data synth|validate|...` (`lemur --help` lists every command).",
                **strict,
                **{name: dict(strict) for name in ("fit", "validate", "test", "predict")},
            },
            args=args,
            run=run,
            auto_configure_optimizers=False,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(LemurCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/auc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch}-{step}",
                "checkpoint.last_every_n_train_steps": DEFAULT_LAST_EVERY_N_TRAIN_STEPS,
            }
        )
        parser.add_lightning_class_args(RunSummary, "summary")
        parser.add_lightning_class_args(ParquetPredictionWriter, "predictions")
        parser.add_argument(
            "--test_after_fit", type=bool, default=True, help="after fit, test the best checkpoint on the test days"
        )

    # ------------------------------------------------------------------ parsing and building
    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except (ArgumentError, OmegaConfBaseException) as err:  # omegaconf: an interpolation that does not resolve
            raise RecipeError(explain(err, self._argv)) from None
        if self.config.get("subcommand"):
            self._resolve_ckpt_path(self.config["subcommand"])

    def _resolve_ckpt_path(self, subcommand: str) -> None:
        """``--ckpt_path last`` -> the newest last.ckpt of lemur's layout; a fit resuming a checkpoint
        continues the MLflow run recorded in it (unless ``--trainer.logger.init_args.run_id`` is given)."""
        cfg = self.config[subcommand]
        ckpt = cfg.get("ckpt_path")
        if not ckpt or ckpt in ("best", "hpc") or "://" in str(ckpt):
            return
        if ckpt == "last":
            found = find_last_checkpoint(
                cfg["trainer"]["default_root_dir"] or ".", cfg.get("checkpoint", {}).get("dirpath")
            )
            if found is None:
                where = cfg.get("checkpoint", {}).get("dirpath") or cfg["trainer"]["default_root_dir"]
                if subcommand != "fit":
                    raise RecipeError(f"--ckpt_path last: no last.ckpt under {where}; pass a checkpoint file")
                print(
                    f"lemur: --ckpt_path last: no last.ckpt under {where}: starting a new run",
                    file=sys.stderr,
                    flush=True,
                )
                cfg["ckpt_path"] = None
                return
            cfg["ckpt_path"] = ckpt = str(found)
        path = Path(ckpt)
        if not path.is_file():
            raise RecipeError(f"--ckpt_path {ckpt}: no such checkpoint file")
        self.resumed_from = path
        if subcommand != "fit":
            return
        record = checkpoint_run(path)
        note = f"lemur: resuming from {path} (global step {record.get('global_step')})"
        logger = cfg["trainer"].get("logger")
        init = getattr(logger, "init_args", None)
        is_mlflow = init is not None and str(getattr(logger, "class_path", "")).endswith("MLFlowLogger")
        if is_mlflow and not init.get("run_id"):
            uri = init.get("tracking_uri") or tracking_uri()
            if record.get("run_id") and record.get("tracking_uri") == uri:
                init["run_id"] = record["run_id"]
                note += f", continuing MLflow run {record['run_id']}"
            else:
                note += (
                    ", in a new MLflow run (the checkpoint's run is in another tracking store)"
                    if record.get("run_id")
                    else ", in a new MLflow run (the checkpoint records none)"
                )
        print(note, file=sys.stderr, flush=True)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config  # run=False: no subcommand
        self._fill_vocab_size(cfg)
        if self.subcommand == "predict":
            self._predict_only(cfg)
        logger = cfg["trainer"].get("logger")
        logger_class = _import_class(str(getattr(logger, "class_path", "")))
        if isinstance(logger_class, type) and issubclass(logger_class, MLFlowLogger):
            init = logger.init_args
            recipes = _config_files(self._argv)
            if not init.get("run_name") and not init.get("run_id"):
                init["run_name"] = run_name(recipes, cfg.get("seed_everything"))
            init["tags"] = {**run_tags(recipes), **(init.get("tags") or {})}  # tags given (a suite's) win

    def _fill_vocab_size(self, cfg) -> None:
        """Text encoders whose ``vocab_size`` is left null get the tokenizer's size, so nobody types 30522.

        By hand, not with jsonargparse's ``link_arguments``: a link's target must be one fixed key that every
        recipe has, while text encoders sit in different places (``model.init_args.query_encoder``, the
        ``doc_encoder``'s ``modalities`` dict), may be absent, and a user's may not take ``vocab_size``."""
        nodes = []
        for node in _class_nodes(cfg.get("model")):
            kind = _import_class(node["class_path"])
            init = node.get("init_args")
            if isinstance(kind, type) and issubclass(kind, TextEncoder) and init is not None:
                if "vocab_size" in init and init["vocab_size"] is None:
                    nodes.append(init)
        if not nodes:
            return
        from lemur.data.tokenize import TokenizerConfig, load_tokenizer

        data = cfg.get("data")
        tokenizer = getattr(getattr(data, "init_args", None), "tokenizer", None)
        path = tokenizer.get("path") if isinstance(tokenizer, Namespace) else None
        try:
            size = len(load_tokenizer(TokenizerConfig(path=path)))
        except ValueError as err:
            raise RecipeError(str(err)) from None
        for init in nodes:
            init["vocab_size"] = size

    @staticmethod
    def _predict_only(cfg) -> None:
        """``lemur predict`` with the recipe a model was trained with: no logger, and of the trainer's callbacks
        only prediction writers (a training recipe's bank warm start, early stopping, ... have nothing to do)."""
        cfg["trainer"]["logger"] = False
        callbacks = cfg["trainer"].get("callbacks") or []
        keep = []
        for callback in callbacks:
            kind = _import_class(str(getattr(callback, "class_path", "")))
            if isinstance(kind, type) and issubclass(kind, BasePredictionWriter):
                keep.append(callback)
        cfg["trainer"]["callbacks"] = keep

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, ImportError, AttributeError, KeyError, FileNotFoundError) as err:
            if isinstance(err, SchemaError):
                raise
            raise RecipeError(explain(err, self._argv)) from err

    # ------------------------------------------------------------------ running
    def before_fit(self) -> None:
        logger = self.trainer.logger
        if self.resumed_from is not None and hasattr(logger, "mark_running"):
            logger.mark_running()

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit") and self.trainer.state.status != "interrupted":
            has_best = any(isinstance(c, ModelCheckpoint) and c.best_model_path for c in self.trainer.callbacks)
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if has_best else None)
        self._report()

    def after_test(self) -> None:
        self._report()

    def _report(self) -> None:
        try:
            self._report_unguarded()
        except Exception as err:  # noqa: BLE001 - reporting must never fail a finished run
            print(f"lemur: could not write the run summary ({type(err).__name__}: {err})", file=sys.stderr, flush=True)

    def _report_unguarded(self) -> None:
        summary = next((c for c in self.trainer.callbacks if isinstance(c, RunSummary)), None)
        if summary is None or not self.trainer.is_global_zero:
            return
        metrics = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.split("/")[-1] in ("auc", "qauc", "gauc")
        }
        lines = ["", "lemur run summary", summary.table(metrics)]
        for note in (getattr(self.model, "undefined_metrics", None) or {}).values():
            lines.append(f"warning: {note}")
        issues = dict(getattr(self.datamodule, "data_issues", {}) or {})
        nonfinite = getattr(self.model, "nonfinite_steps", 0)
        if nonfinite:
            issues["nonfinite_steps_skipped"] = nonfinite
        for name, count in sorted(issues.items()):
            lines.append(f"{name.replace('_', ' '):<22}{count:>14d}")
        logger = self.trainer.logger
        if isinstance(logger, MLFlowLogger):
            if issues:
                logger.log_metrics(
                    {
                        f"data/{k}" if k != "nonfinite_steps_skipped" else "train/nonfinite_steps": float(v)
                        for k, v in issues.items()
                    },
                    step=self.trainer.global_step,
                )
            failure = getattr(logger, "failure", None)
            if failure is None:
                lines += [
                    f"MLflow run {logger.run_id} in experiment '{logger._experiment_name}' at {logger._tracking_uri}",
                    f"  open it with: mlflow ui --backend-store-uri {logger._tracking_uri}",
                    # MLflow 3 opens an experiment in its GenAI view (traces); workflowType selects the runs table
                    f"  then browse: http://127.0.0.1:5000/#/experiments/{logger.experiment_id}/runs"
                    "?workflowType=machine_learning",
                ]
                logger.experiment.log_text(logger.run_id, "\n".join(lines[1:]), "summary.txt")
            else:
                lines.append(
                    f"MLflow at {logger._tracking_uri} failed ({failure}): this run is not (completely) tracked"
                )
        ckpt = next((c for c in self.trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        if ckpt is not None and ckpt.best_model_path:
            lines.append(f"best checkpoint: {ckpt.best_model_path}")
        if ckpt is not None and ckpt.last_model_path:
            lines.append(f"last checkpoint: {ckpt.last_model_path}")
        summary.print("\n".join(lines))


# ---------------------------------------------------------------------------- entry point
def _started_training() -> bool:
    cli = LemurCLI.current
    trainer = getattr(cli, "trainer", None) if cli is not None else None
    return trainer is not None and trainer.global_step > 0


def _resume_command(checkpoint: str) -> str:
    argv = [a for a in sys.argv[1:]] if LemurCLI.current is None else LemurCLI.current._argv
    keep, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        if arg.startswith("--ckpt_path="):
            continue
        keep.append(arg)
    return "lemur " + " ".join(keep + ["--ckpt_path", checkpoint])


def run_cli(argv: list[str] | None = None) -> int:
    """Run ``LemurCLI`` and turn the ways it can stop into an exit status and a message:
    2 bad recipe / settings, 3 non-finite loss (``nonfinite_loss: raise``), 130 / 143 interrupted
    by Ctrl+C / SIGTERM (after writing last.ckpt). Bad data (SchemaError) is left to the caller."""
    LemurCheckpoint.last_interrupt = None
    try:
        LemurCLI(args=argv)  # None: LightningCLI reads sys.argv itself
    except RecipeError as err:
        print(f"lemur: bad recipe or option: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SIGTERMException:
        info = LemurCheckpoint.last_interrupt or {"signal": "SIGTERM", "step": None, "checkpoint": None}
        signal_name = info["signal"]
        if info["checkpoint"]:
            print(
                f"lemur: stopped by {signal_name} at global step {info['step']}; wrote {info['checkpoint']}\n"
                f"  resume with: {_resume_command(info['checkpoint'])}",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(
                f"lemur: stopped by {signal_name} (no checkpoint written: training had not started, or it was "
                "not fitting)",
                file=sys.stderr,
                flush=True,
            )
        return EXIT_SIGINT if signal_name == "SIGINT" else EXIT_SIGTERM
    except FloatingPointError as err:
        print(f"lemur: training stopped: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    except (ValueError, MisconfigurationException, FileNotFoundError) as err:
        if isinstance(err, SchemaError) or _started_training() or os.environ.get("LEMUR_TRACEBACK"):
            raise
        print(f"lemur: cannot start: {err}\n  (set LEMUR_TRACEBACK=1 to see where it was raised)", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
