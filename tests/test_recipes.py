"""Every recipe under recipes/ parses and instantiates through the real CLI class (no training),
alone and with the tiny override; --print_config keeps every value a recipe states; misspelt keys
and unknown classes fail loudly.

Kinds of YAML under recipes/:
  base      -- names ``model.class_path`` and ``data.class_path``: a complete recipe;
  override  -- anything else (tiny.yaml, ablations/*.yaml): combined with the base recipe(s) its
               header command names (``lemur fit -c recipes/<base>.yaml -c ...``), else recipes/lemur.yaml;
  suite     -- files under recipes/suites/ (for ``lemur run``): must load as YAML mappings.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import lightning as L
import pytest
import yaml

from lemur.cli import LemurCLI, main
from lemur.data import LemurDataModule
from lemur.trainer_cli import RecipeError

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
DEFAULT_BASE = RECIPES / "lemur.yaml"
TINY = RECIPES / "tiny.yaml"
ALL_YAML = sorted(p for ext in ("*.yaml", "*.yml") for p in RECIPES.rglob(ext))


def _resolve(dotted: str):
    import importlib

    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def kind(path: Path) -> str:
    if "suites" in path.relative_to(RECIPES).parts:
        return "suite"
    data = _load(path) or {}
    if (
        isinstance(data.get("model"), dict)
        and "class_path" in data["model"]
        and isinstance(data.get("data"), dict)
        and "class_path" in data["data"]
    ):
        return "base"
    return "override"


def bases_of(override: Path) -> list[Path]:
    """Base recipes named by ``-c`` in the override's header comment, else the default base."""
    header = "".join(line for line in override.read_text().splitlines(keepends=True) if line.startswith("#"))
    named = [RECIPES.parent / m for m in re.findall(r"-c\s+(recipes/\S+\.ya?ml)", header)]
    found = [p for p in named if p.exists() and p != override and kind(p) == "base"]
    return list(dict.fromkeys(found)) or [DEFAULT_BASE]


BASES = [p for p in ALL_YAML if kind(p) == "base"]
OVERRIDES = [p for p in ALL_YAML if kind(p) == "override"]
SUITES = [p for p in ALL_YAML if kind(p) == "suite"]


def _combos() -> list[tuple[Path, ...]]:
    combos: list[tuple[Path, ...]] = []
    for base in BASES:
        combos += [(base,), (base, TINY)]
    for override in OVERRIDES:
        if override == TINY:
            continue
        for base in bases_of(override):
            combos += [(base, override), (base, override, TINY)]
    return combos


COMBOS = _combos()


def _id(combo: tuple[Path, ...]) -> str:
    return "+".join(str(p.relative_to(RECIPES)) for p in combo)


def _args(combo: tuple[Path, ...]) -> list[str]:
    return [a for p in combo for a in ("-c", str(p))]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a CLI constructs (runs/, mlruns.db) may land in the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lemur"])  # LightningCLI warns when pytest's argv sits beside args=
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")


# ------------------------------------------------------------------------------ inventory
def test_inventory() -> None:
    assert DEFAULT_BASE in BASES and TINY in OVERRIDES
    covered = {p for combo in COMBOS for p in combo} | set(SUITES)
    assert covered == set(ALL_YAML), f"recipes not tested: {sorted(set(ALL_YAML) - covered)}"
    assert all(len(c) == len(set(c)) for c in COMBOS)


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_is_self_describing(path: Path) -> None:
    """House rule 7: a header comment says what the file is and the exact command."""
    text = path.read_text()
    data = _load(path)
    assert isinstance(data, dict) and data, "a recipe is a non-empty YAML mapping"
    assert text.startswith("#"), "the file starts with a comment header"
    assert "Command:" in text, "the header gives the exact command"
    if kind(path) == "base":
        assert "Reproduces:" in text, "a base recipe says what it reproduces"


def test_suites_load() -> None:
    for path in SUITES:
        assert isinstance(_load(path), dict), path


# ------------------------------------------------------------------------------ instantiate
@pytest.mark.parametrize("combo", COMBOS, ids=_id)
def test_recipe_instantiates(combo: tuple[Path, ...]) -> None:
    cli = LemurCLI(args=[*_args(combo), "--trainer.logger", "false"], run=False)
    assert isinstance(cli.model, L.LightningModule)
    assert isinstance(cli.datamodule, L.LightningDataModule)
    assert isinstance(cli.trainer, L.Trainer) and cli.trainer.logger is None
    assert sum(p.numel() for p in cli.model.parameters()) > 0
    # The configured class is the instantiated one (a preset builder function may stand in for it).
    target = _resolve(cli.config.model.class_path)
    if isinstance(target, type):
        assert isinstance(cli.model, target)
    if isinstance(cli.datamodule, LemurDataModule):
        _check_encoders_fit_the_data(cli.model, cli.datamodule)


def _check_encoders_fit_the_data(model: L.LightningModule, dm: LemurDataModule) -> None:
    """Token budgets of the data fit the text encoders' position/type/vocab tables."""
    from lemur.data.tokenize import load_tokenizer

    tok = dm.tokenizer_config
    vocab = len(load_tokenizer(tok))
    query = getattr(model, "query_encoder", None)
    if query is not None and hasattr(query, "max_len"):
        assert query.max_len >= tok.query_len + 1, "query encoder max_len < [CLS] + query_len"
        assert query.vocab_size >= vocab
    doc = getattr(model, "doc_encoder", None)
    modalities = getattr(doc, "modalities", {})
    text = modalities["text"] if "text" in modalities else None
    if text is not None and hasattr(text, "max_len"):
        n = len(tok.fields)
        assert text.max_len >= 1 + sum(tok.fields.values()) + n, "doc encoder max_len < CLS + fields + SEPs"
        assert text.num_types >= n + 1, "doc encoder num_types < CLS + one type per field"
        assert text.vocab_size >= vocab
    if "image" in modalities:
        assert dm.hparams.image_size, "an image modality needs data.image_size"


def test_tiny_override_applies() -> None:
    cli = LemurCLI(args=[*_args((DEFAULT_BASE, TINY)), "--trainer.logger", "false"], run=False)
    tiny = _load(TINY)
    assert cli.trainer.max_steps == tiny["trainer"]["max_steps"]
    assert cli.datamodule.hparams.batch_size == tiny["data"]["init_args"]["batch_size"]
    assert cli.datamodule.hparams.num_workers == 0
    assert str(cli.datamodule.root) == tiny["data"]["init_args"]["root"]
    # The base's model is untouched by the override.
    assert cli.config.model.class_path == _load(DEFAULT_BASE)["model"]["class_path"]


# ------------------------------------------------------------------------------ --print_config
def _print_config(args: list[str], capsys: pytest.CaptureFixture) -> dict:
    with pytest.raises(SystemExit) as info:
        main(["fit", *args, "--print_config"])
    assert info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def _leaves(tree, prefix=()):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, (*prefix, k))
    elif isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        for i, v in enumerate(tree):  # a list of components (e.g. ConcatTextEncoder.encoders): each element's leaves
            yield from _leaves(v, (*prefix, i))
    else:
        yield prefix, tree


def _get(tree, path):
    for k in path:
        if isinstance(k, int):
            assert isinstance(tree, list) and k < len(tree), f"missing {'.'.join(map(str, path))}"
        else:
            assert isinstance(tree, dict) and k in tree, f"missing {'.'.join(map(str, path))}"
        tree = tree[k]
    return tree


def _stated(combo: tuple[Path, ...]) -> tuple[dict, list[str]]:
    """Leaves stated by the files of ``combo`` (later files win). Where a later file swaps a
    ``class_path``, the earlier leaves under it are dropped, and init_args names the new class
    would silently inherit from the old one (a LightningCLI pitfall) are reported."""
    stated: dict = {}
    problems: list[str] = []
    for path in combo:
        leaves = dict(_leaves(_load(path)))
        # A list a later file states (e.g. trainer.callbacks) replaces the earlier list as a whole.
        lists = {key[:i] for key in leaves for i, k in enumerate(key) if isinstance(k, int)}
        stated = {k: v for k, v in stated.items() if not any(k[: len(prefix)] == prefix for prefix in lists)}
        for key, value in leaves.items():
            if key[-1] != "class_path" or stated.get(key, value) == value:
                continue
            scope = key[:-1]
            old_args = {
                k[len(scope) + 1]
                for k in stated
                if k[: len(scope) + 1] == (*scope, "init_args") and len(k) > len(scope) + 1
            }
            new_args = {
                k[len(scope) + 1]
                for k in leaves
                if k[: len(scope) + 1] == (*scope, "init_args") and len(k) > len(scope) + 1
            }
            for name in sorted(old_args - new_args):
                problems.append(
                    f"{path.name} swaps {'.'.join(map(str, scope))} to {value} but does not restate init_args.{name}"
                )
            stated = {k: v for k, v in stated.items() if k[: len(scope)] != scope}
        # A later leaf (e.g. `sqdc: null`) replaces the whole subtree an earlier file stated there.
        stated = {
            k: v for k, v in stated.items() if not any(len(k) > len(leaf) and k[: len(leaf)] == leaf for leaf in leaves)
        }
        stated.update(leaves)
    return stated, problems


@pytest.mark.parametrize("combo", COMBOS, ids=_id)
def test_print_config_keeps_every_stated_value(combo: tuple[Path, ...], capsys: pytest.CaptureFixture) -> None:
    """Snapshot check: every class_path and value the recipe files state survives into the
    resolved config, the later file winning."""
    printed = _print_config(_args(combo), capsys)
    stated, problems = _stated(combo)
    for key, value in stated.items():
        if isinstance(value, str) and value.startswith("${"):  # an interpolation: the value it names (rule 12)
            value = _get(printed, tuple(value[2:-1].split(".")))
        assert _get(printed, key) == value, f"{'.'.join(map(str, key))}: recipe says {value!r}"
    assert any(k[-1] == "class_path" for k in stated), "a recipe names its classes"
    # Swapping a class in an override: restate its full init_args (docs/architecture.md, LightningCLI pitfalls).
    carried = [p for p in problems if _carried(printed, p)]
    assert not carried, carried


def _carried(printed: dict, problem: str) -> bool:
    """Only a problem if the new class really took the old value (it accepts that name)."""
    scope, name = re.match(r".* swaps (\S+) to .* init_args\.(\S+)$", problem).groups()
    node = printed
    for k in scope.split("."):
        node = node.get(k, {}) if isinstance(node, dict) else {}
    return isinstance(node, dict) and name in (node.get("init_args") or {})


def test_print_config_of_the_default_recipe(capsys: pytest.CaptureFixture) -> None:
    printed = _print_config(["-c", str(DEFAULT_BASE)], capsys)
    model = printed["model"]
    assert model["class_path"] == "lemur.systems.LemurRanker"
    args = model["init_args"]
    assert args["query_encoder"]["class_path"] == "lemur.encoders.TransformerTextEncoder"
    assert args["doc_encoder"]["class_path"] == "lemur.encoders.DocumentEncoder"
    assert args["backbone"]["class_path"] == "lemur.ranking.MLPBackbone"
    assert args["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert printed["data"]["class_path"] == "lemur.data.LemurDataModule"
    assert (
        printed["trainer"]["logger"]["class_path"] == "lemur.tracking.SafeMLFlowLogger"
    )  # an MLFlowLogger that never stops training
    assert (
        printed["checkpoint"]["last_every_n_train_steps"] == 200 and printed["checkpoint"]["save_on_interrupt"] is True
    )
    assert printed["trainer"]["logger"]["init_args"]["experiment_name"] == "lemur"
    assert printed["checkpoint"]["monitor"] == "val/auc"
    assert printed["test_after_fit"] is True


@pytest.mark.slow
def test_print_config_through_the_console_script() -> None:
    import shutil
    import subprocess

    lemur = shutil.which("lemur") or str(Path(sys.executable).with_name("lemur"))
    out = subprocess.run(
        [lemur, "fit", "-c", str(DEFAULT_BASE), "--print_config"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "class_path: lemur.systems.LemurRanker" in out.stdout
    assert "class_path: lemur.data.LemurDataModule" in out.stdout


# ------------------------------------------------------------------------------ each number once (rule 12)
def test_document_width_is_stated_once_and_followed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """recipes/lemur.yaml states the document width once; a later -c file (or --key) that changes it moves the
    query encoder, the text tower and the memory bank with it (interpolations resolve after the merge)."""
    assert len(re.findall(r"^\s*out_dim: 128\b", DEFAULT_BASE.read_text(), flags=re.MULTILINE)) == 1
    override = tmp_path / "width.yaml"
    override.write_text("model:\n  init_args:\n    doc_encoder:\n      init_args:\n        out_dim: 48\n")
    for args in (["-c", str(override)], ["--model.init_args.doc_encoder.init_args.out_dim", "48"]):
        cli = LemurCLI(args=["-c", str(DEFAULT_BASE), "-c", str(TINY), *args, "--trainer.logger", "false"], run=False)
        model = cli.model
        assert model.doc_encoder.out_dim == model.query_encoder.out_dim == 48
        assert model.doc_encoder.modalities["text"].out_dim == 48 and model.memory_bank.dim == 48
    printed = _print_config(["-c", str(DEFAULT_BASE), "-c", str(override)], capsys)
    assert printed["model"]["init_args"]["memory_bank"]["init_args"]["dim"] == 48  # resolved in the saved recipe


def test_an_interpolation_to_nowhere_names_its_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model:\n  init_args:\n    memory_bank:\n      init_args:\n        dim: ${model.init_args.nowhere}\n"
    )
    assert main(["fit", "-c", str(DEFAULT_BASE), "-c", str(bad), "--print_config"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and f"{bad}:5" in err and "Traceback" not in err, err[-2000:]


# ------------------------------------------------------------------------------ mistakes fail loudly
BAD_OVERRIDES = {
    "misspelt model key": ("model:\n  init_args:\n    featurs:\n      token_dim: 32\n", "featurs"),
    "misspelt nested key": ("model:\n  init_args:\n    features:\n      token_dimm: 32\n", "token_dimm"),
    "misspelt data key": ("data:\n  init_args:\n    batchsize: 8\n", "batchsize"),
    "misspelt trainer key": ("trainer:\n  max_stepz: 3\n", "max_stepz"),
    "unknown class_path": (
        "model:\n  init_args:\n    backbone:\n      class_path: lemur.ranking.NoSuchBackbone\n",
        "NoSuchBackbone",
    ),
    "unknown module": (
        "model:\n  init_args:\n    short_history:\n      class_path: no_such_pkg.Decoder\n",
        "no_such_pkg",
    ),
    "wrong type": ("data:\n  init_args:\n    batch_size: lots\n", "batch_size"),
}


@pytest.mark.parametrize("name", BAD_OVERRIDES)
def test_bad_override_fails(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text, needle = BAD_OVERRIDES[name]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert (
        main(["fit", "-c", str(DEFAULT_BASE), "-c", str(bad), "--print_config"]) == 2
    )  # `lemur` exits 2, no traceback
    err = capsys.readouterr().err
    assert needle in err, err[-2000:]
    assert f"{bad}:" in err and "Traceback" not in err, err[-2000:]  # the file (and line) holding the mistake
    # The same through the class used by the tests above.
    with pytest.raises(RecipeError, match=needle):
        LemurCLI(args=["-c", str(DEFAULT_BASE), "-c", str(bad), "--trainer.logger", "false"], run=False)


def test_misspelt_command_line_key_fails(capsys: pytest.CaptureFixture) -> None:
    assert main(["fit", "-c", str(DEFAULT_BASE), "--model.init_args.featurs.token_dim", "3", "--print_config"]) == 2
    assert "featurs" in capsys.readouterr().err


CALLBACK_FRAGMENTS = sorted((REPO / "callbacks").glob("*.yaml"))


@pytest.mark.parametrize("fragment", CALLBACK_FRAGMENTS, ids=lambda p: p.name)
def test_callback_fragments_compose_with_the_default_recipe(fragment: Path, monkeypatch) -> None:
    """Each YAML fragment in callbacks/ adds its callbacks to a recipe (``callbacks+:`` appends)."""
    monkeypatch.setattr(sys, "argv", ["lemur"])
    cli = LemurCLI(args=["-c", str(DEFAULT_BASE), "-c", str(fragment), "--trainer.logger", "false"], run=False)
    names = {type(cb).__name__ for cb in cli.trainer.callbacks}
    listed = {item["class_path"].rsplit(".", 1)[-1] for item in _load(fragment)["trainer"]["callbacks+"]}
    assert listed <= names
    assert {
        "LemurCheckpoint",
        "RunSummary",
    } <= names  # lemur's own callbacks stay (LemurCheckpoint is a ModelCheckpoint)
