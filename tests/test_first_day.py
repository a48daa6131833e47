"""A new user's first day (issue 23): plug-ins that fail clearly, a CLI that lists what it does, runs that are ready to
compare in MLflow, predict with the training recipe, undefined metrics reported as such, and the examples of
CONTRIBUTING.md trained from a folder outside the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from jsonargparse import Namespace

from lemur.cli import main
from lemur.contracts import ContractError, check_vocabulary
from lemur.data import LemurDataModule
from lemur.encoders import DocumentEncoder, TransformerTextEncoder
from lemur.ranking import FeatureConfig, MLPBackbone
from lemur.run_record import run_name, run_params
from lemur.sequence import MeanPoolDecoder, SequenceDecoder
from lemur.systems import LemurRanker

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
BASE, TINY = REPO / "recipes" / "lemur.yaml", REPO / "recipes" / "tiny.yaml"
FEATURES = FeatureConfig(token_dim=8, user_buckets=50, doc_buckets=50, cat_buckets=30)


@pytest.fixture
def batch(handmade_dataset: Path) -> dict[str, torch.Tensor]:
    dm = LemurDataModule(root=str(handmade_dataset), batch_size=16, num_workers=0)
    dm.setup("fit")
    assert dm.vocab_size == 30522  # the packaged tokenizer's: what the text encoders must cover
    return next(iter(dm.train_dataloader()))


class WholeHistoryDecoder(SequenceDecoder):
    """A broken plug-in: returns the items ``[B, L, D]`` instead of one vector per row."""

    uses_query = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, query, items, mask):
        return items


def _ranker(**kwargs) -> LemurRanker:
    text = partial(TransformerTextEncoder, num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, out_dim=24)
    return LemurRanker(
        backbone=partial(MLPBackbone, hidden_dims=[16], dropout=0.0),
        features=FEATURES,
        query_encoder=text(),
        doc_encoder=DocumentEncoder({"text": text(num_types=5)}, out_dim=24),
        **kwargs,
    )


# ------------------------------------------------------------------------------ slot contracts
def test_a_decoder_of_the_wrong_shape_is_named_with_its_recipe_key(batch) -> None:
    model = _ranker(short_history=MeanPoolDecoder, long_history=WholeHistoryDecoder)
    length = batch["hist_long"].shape[1]
    with pytest.raises(ContractError) as err:
        model(batch)
    assert str(err.value) == (
        f"model.long_history (test_first_day.WholeHistoryDecoder) returned [16, {length}, 8]; "
        "a SequenceDecoder returns [B, out_dim] = [16, 8]"
    )


def test_a_too_small_vocabulary_is_caught_before_an_index_error() -> None:
    encoder = TransformerTextEncoder(vocab_size=1000, num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32)
    with pytest.raises(
        ContractError,
        match=r"model.query_encoder \(lemur.encoders.text.TransformerTextEncoder\) "
        r"has vocab_size=1000, but the tokenizer \(data.tokenizer\) has 30522 token ids",
    ):
        check_vocabulary(encoder, "model.query_encoder", 30522)
    check_vocabulary(TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32), "k", 30522)


def test_the_cli_fills_in_the_tokenizers_vocab_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lemur.cli import LemurCLI

    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.chdir(tmp_path)
    cli = LemurCLI(
        args=["-c", str(BASE), "-c", str(TINY), "-c", str(EXAMPLES / "my_override.yaml"), "--trainer.logger", "false"],
        run=False,
    )
    assert type(cli.model.query_encoder).__name__ == "BagOfWordsEncoder"
    assert cli.model.query_encoder.vocab_size == 30522  # null in the recipe: the tokenizer's size
    assert cli.model.doc_encoder.modalities["text"].vocab_size == 30522
    assert type(cli.model.histories["long"]).__name__ == "MaxPoolDecoder"
    assert cli.model.global_token is None, "the example's MaxPoolDecoder ignores the query: no unused parameters"


def test_an_unimportable_package_gets_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myplug").mkdir()  # the user's package is here, but this folder is not on sys.path
    (tmp_path / "myplug" / "__init__.py").write_text("")
    override = tmp_path / "o.yaml"
    override.write_text("model:\n  init_args:\n    long_history:\n      class_path: myplug.decoders.MaxPoolDecoder\n")
    assert main(["fit", "-c", str(BASE), "-c", str(TINY), "-c", str(override), "--print_config"]) == 2
    err = capsys.readouterr().err
    assert "model.long_history: No module named 'myplug'" in err
    assert "hint: a class_path's package must be importable" in err
    assert "(./myplug is in this folder, which is not on the path: run `PYTHONPATH=. lemur ...`)" in err


# ------------------------------------------------------------------------------ undefined metrics
def test_a_one_class_split_logs_nan_auc_and_says_why(batch, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _ranker()
    model.eval()
    logged: dict[str, float] = {}
    monkeypatch.setattr(model, "log", lambda name, value, **kw: logged.__setitem__(name, float(value)))
    with torch.no_grad():
        model.validation_step({**batch, "label": torch.zeros_like(batch["label"])}, 0)
    model.on_validation_epoch_end()
    assert all(logged[f"val/{k}"] != logged[f"val/{k}"] for k in ("auc", "qauc", "gauc")), f"not all NaN: {logged}"
    assert model.undefined_metrics["val"] == (
        "val/auc, val/qauc and val/gauc are undefined (NaN): the val split: all 16 rows have label 0; AUC needs "
        "clicks and non-clicks"
    )


# ------------------------------------------------------------------------------ the CLI
def test_lemur_help_lists_every_verb(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("fit", "validate", "test", "predict", "run", "data"):
        assert re.search(rf"^  {verb}\s+\S", out, flags=re.MULTILINE), f"{verb} missing from:\n{out}"


@pytest.mark.parametrize("command", ["synth", "validate", "movielens-100k", "mind", "microlens", "kuaisar"])
def test_every_data_subcommand_has_a_description(command: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["data", command, "--help"])
    out = capsys.readouterr().out
    usage, _, rest = out.partition("\n\n")
    assert rest and not rest.startswith(("positional arguments", "options")), f"no description:\n{out}"


def test_predict_keeps_only_prediction_writers_and_no_logger() -> None:
    from lemur.trainer_cli import LemurCLI

    cfg = Namespace(
        trainer=Namespace(
            logger=Namespace(class_path="lemur.tracking.SafeMLFlowLogger"),
            callbacks=[
                Namespace(class_path="lemur.callbacks.MemoryBankCallback"),
                Namespace(class_path="lemur.callbacks.ParquetPredictionWriter"),
            ],
        )
    )
    LemurCLI._predict_only(cfg)
    assert cfg.trainer.logger is False
    assert [c.class_path for c in cfg.trainer.callbacks] == ["lemur.callbacks.ParquetPredictionWriter"]


# ------------------------------------------------------------------------------ MLflow params
def test_run_params_have_readable_prefixes_and_no_internal_keys() -> None:
    recipe = {
        "seed_everything": 1,
        "trainer": {
            "max_steps": 4,
            "precision": "32-true",
            "devices": 1,
            "logger": {"class_path": "x"},
            "callbacks": [{"class_path": "lemur.callbacks.MemoryBankCallback", "init_args": {"warm_start": True}}],
        },
        "model": {
            "class_path": "lemur.systems.LemurRanker",
            "init_args": {
                "_instantiator": "x",
                "features": {"token_dim": 64},
                "backbone": {"class_path": "lemur.ranking.MLPBackbone", "init_args": {"hidden_dims": [256, 128]}},
            },
        },
        "data": {"class_path": "lemur.data.LemurDataModule", "init_args": {"batch_size": 32}},
        "checkpoint": {"monitor": "val/auc"},
        "config": ["a.yaml"],
        "test_after_fit": True,
    }
    assert run_params(recipe) == {
        "seed": 1,
        "trainer.max_steps": 4,
        "trainer.precision": "32-true",
        "trainer.devices": 1,
        "callbacks.MemoryBankCallback.warm_start": True,
        "callbacks.checkpoint.monitor": "val/auc",
        "model.class": "lemur.systems.LemurRanker",
        "model.features.token_dim": 64,
        "model.backbone.class": "lemur.ranking.MLPBackbone",
        "model.backbone.hidden_dims": [256, 128],
        "data.class": "lemur.data.LemurDataModule",
        "data.batch_size": 32,
        "test_after_fit": True,
    }
    assert run_name(["recipes/lemur.yaml", "/x/recipes/tiny.yaml"], 3) == "lemur+tiny-seed3"


# ------------------------------------------------------------------------------ CONTRIBUTING's examples
def test_contributing_shows_the_example_files_verbatim() -> None:
    text = (REPO / "CONTRIBUTING.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    shown = {}
    for block in blocks:
        if block.startswith("   "):  # a block inside a numbered list is indented by 3
            block = "\n".join(line[3:] for line in block.splitlines())
        first, _, body = block.partition("\n")
        if m := re.match(r"# (my_pkg/\w+\.py)$", first.strip()):
            shown[m.group(1)] = body
    assert {"my_pkg/decoders.py", "my_pkg/losses.py"} <= set(shown), sorted(shown)
    for name, body in shown.items():
        assert body.strip() == (EXAMPLES / name).read_text().strip(), f"CONTRIBUTING.md's {name} != examples/{name}"


def _lemur() -> str:
    return str(Path(sys.executable).with_name("lemur"))


@pytest.mark.slow
def test_the_examples_train_from_a_folder_outside_the_repository(tmp_path: Path) -> None:
    """As a user's own package: copied to a folder of its own, on PYTHONPATH, lemur run from there."""
    from lemur.data.synth import PRESETS, generate

    home = tmp_path / "home"
    shutil.copytree(EXAMPLES / "my_pkg", home / "my_pkg")
    shutil.copy(EXAMPLES / "my_override.yaml", home)
    generate(PRESETS["tiny"], home / "tiny", progress=False)
    env = {**os.environ, "PYTHONPATH": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        _lemur(),
        "fit",
        "-c",
        str(BASE),
        "-c",
        str(TINY),
        "-c",
        "my_override.yaml",
        "--data.init_args.root",
        "tiny",
        "--trainer.max_steps",
        "2",
        "--trainer.logger",
        "false",
        "--test_after_fit",
        "false",
        "--trainer.enable_progress_bar",
        "false",
    ]
    done = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "litlogger" not in done.stdout + done.stderr
    assert list((home / "runs" / "checkpoints").glob("last*.ckpt"))


@pytest.mark.slow
def test_a_suite_runs_from_another_folder(tmp_path: Path) -> None:
    from lemur.data.synth import PRESETS, generate

    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [
        _lemur(),
        "run",
        str(REPO / "recipes" / "suites" / "table4_sampling.yaml"),
        "--config",
        str(TINY),
        "--seeds",
        "0",
        "--only",
        "no_sampling",
        "--max-steps",
        "1",
        "--data",
        str(tmp_path / "tiny"),
        "--out",
        "suite",
        "--progress-every",
        "0",
    ]
    done = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list((elsewhere / "suite").rglob("metrics.json"))
