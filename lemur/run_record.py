"""What a tracked run records besides its metrics, so that runs can be compared in MLflow.

- ``run_params(recipe)``: every setting of the resolved recipe, flat, under readable prefixes:
  ``seed``, ``model.…``, ``data.…``, ``trainer.…`` (without the callbacks and the logger),
  ``callbacks.<Class>.…`` for each of ``trainer.callbacks`` and ``callbacks.checkpoint|summary|predictions.…``
  for lemur's own; a component is ``<key>.class`` plus its ``init_args`` under ``<key>.…``.
  Two runs that differ in anything (the seed, ``trainer.max_steps``, a callback's ``warm_start``)
  differ in a param, which MLflow's compare view shows.
- ``run_name(recipes, seed)``: ``lemur+tiny-seed0`` (the recipe files' stems and the seed).
- ``run_tags(recipes)``: ``lemur.recipes``, ``mlflow.source.git.commit`` (MLflow's own tag, shown as the
  run's source version), ``lemur.git_dirty`` (``dirty`` | ``clean``), ``lemur.version`` and ``lemur.host``.

Lightning logs ``LightningModule.hparams`` instead, which hold LightningCLI internals (``_instantiator``),
no seed, no trainer or callback settings and no prefixes; ``LemurCLI`` turns that off and logs these.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import lemur

LEMUR_CALLBACKS = ("checkpoint", "summary", "predictions")  # LemurCLI's own callback argument groups
NOT_SETTINGS = ("config", "print_config", "subcommand")  # command-line plumbing, not a setting of the run


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict) and isinstance(node.get("class_path"), str):
        out[f"{prefix}.class"] = node["class_path"]
        for key in ("init_args", "dict_kwargs"):
            _flatten(node.get(key) or {}, prefix, out)
    elif isinstance(node, dict):
        for key, value in node.items():
            if not str(key).startswith("_"):  # internal keys (LightningCLI's `_instantiator`, `__path__`)
                _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(node, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in node):
        for i, value in enumerate(node):
            _flatten(value, f"{prefix}.{i}", out)
    else:
        out[prefix] = list(node) if isinstance(node, tuple) else node


def run_params(recipe: dict[str, Any]) -> dict[str, Any]:
    """The flat params of a resolved recipe (``parser.dump`` of a subcommand's config, loaded as a dict)."""
    out: dict[str, Any] = {}
    if "seed_everything" in recipe:
        out["seed"] = recipe["seed_everything"]
    for key, value in recipe.items():
        if key == "seed_everything" or key in NOT_SETTINGS:
            continue
        if key == "trainer":
            callbacks = (value or {}).get("callbacks") or []
            names = [str(c.get("class_path", "callback")).rsplit(".", 1)[-1] for c in callbacks if isinstance(c, dict)]
            for i, (name, callback) in enumerate(zip(names, callbacks)):
                unique = name if names.count(name) == 1 else f"{name}.{i}"
                _flatten(callback.get("init_args") or {}, f"callbacks.{unique}", out)
            rest = {k: v for k, v in (value or {}).items() if k not in ("callbacks", "logger")}
            _flatten(rest, "trainer", out)
        elif key in LEMUR_CALLBACKS:
            _flatten(value, f"callbacks.{key}", out)
        else:
            _flatten(value, key, out)
    return {k: "None" if v is None else v for k, v in out.items()}


def run_name(recipes: list[str], seed: Any) -> str:
    """``lemur+tiny-seed0``: the recipe files' stems in order, and the seed."""
    stems = "+".join(Path(r).stem for r in recipes) or "lemur"
    return f"{stems}-seed{seed}"


def _git(*args: str) -> str | None:
    """Git's answer about the repository lemur's code is in (None outside a checkout or without git).
    MLflow's own git tag needs the `mlflow.start_run` context, which Lightning's logger does not use."""
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(lemur.__file__).resolve().parent), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def run_tags(recipes: list[str]) -> dict[str, str]:
    tags = {"lemur.recipes": ", ".join(recipes), "lemur.version": lemur.__version__, "lemur.host": platform.node()}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["lemur.git_dirty"] = "dirty" if _git("status", "--porcelain", "--untracked-files=no") else "clean"
    return tags
