"""The ``lemur`` console script.

``lemur fit|validate|test|predict -c recipe.yaml [-c override.yaml] [--key value]`` is a
LightningCLI: components are chosen by ``class_path``/``init_args``; ``--print_config``
shows the resolved recipe. MLflow is the default logger (tracking URI from
``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns.db`` in the working directory); each fit is
one MLflow run with the params, the metrics and the resolved recipe (``recipe.yaml``).

``lemur data synth|validate ...`` prepares and checks datasets (see ``lemur data --help``).

``lemur run SUITE.yaml`` runs a suite of recipes x seeds and writes a comparison report
(see :mod:`lemur.suite` and ``lemur run --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


def __getattr__(name: str):
    # Lightning takes seconds to import: only the training sub-commands pay for it.
    if name in ("LemurCLI", "RecipeToLogger"):
        from lemur import trainer_cli

        return getattr(trainer_cli, name)
    raise AttributeError(f"module 'lemur.cli' has no attribute {name!r}")


# ---------------------------------------------------------------------------- lemur data
# Converters of real datasets: each module has COMMAND, HELP, add_arguments(parser) and main(args).
DATASET_COMMANDS = (
    "lemur.data.movielens",
    "lemur.data.adapters.mind",
    "lemur.data.adapters.microlens",
    "lemur.data.adapters.kuaisar",
    "lemur.data.adapters.amazon_reviews",
)


def _data_main(argv: list[str]) -> int:
    import importlib

    parser = argparse.ArgumentParser(
        prog="lemur data",
        description="Prepare and check datasets in lemur's Parquet schema "
        "(docs/datasets.md describes the schema and every converter).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    synth_help = "generate LEMUR-Synth, the built-in simulated search logs"
    synth = sub.add_parser(
        "synth", help=synth_help, description=f"{synth_help[0].upper()}{synth_help[1:]} (presets: docs/synth.md)."
    )
    synth.add_argument(
        "--preset", default="small", help="tiny | small | small-cold | large (default: small; docs/synth.md)"
    )
    synth.add_argument("--out", required=True, help="output folder (docs.parquet, events.parquet, synth.json)")
    synth.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    synth.add_argument("--force", action="store_true", help="overwrite an existing dataset in --out")
    synth.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field of the preset (repeatable), e.g. --set new_docs_per_day=800 "
        "--set preference_drift=0.05; the fields are SynthConfig's (lemur/data/synth.py)",
    )
    validate = sub.add_parser(
        "validate",
        help="check a dataset folder against the schema",
        description="Check a dataset folder (docs.parquet, events.parquet) against lemur's schema "
        "(docs/datasets.md); bad input is reported with its file, column, row and value.",
    )
    validate.add_argument("root", help="folder holding docs.parquet and events.parquet")
    for name in DATASET_COMMANDS:
        module = importlib.import_module(name)
        command = sub.add_parser(module.COMMAND, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.main)
    args = parser.parse_args(argv)

    if getattr(args, "handler", None) is not None:
        from lemur.data.download import DownloadError

        try:
            return args.handler(args)
        except (DownloadError, FileExistsError, ValueError) as err:
            if type(err).__name__ == "SchemaError":
                raise  # main() reports bad input data
            print(f"lemur data {args.command}: {err}", file=sys.stderr)
            return 1

    if args.command == "synth":
        import dataclasses

        from lemur.data.synth import PRESETS, generate

        if args.preset not in PRESETS:
            parser.error(f"--preset: unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}")
        out = Path(args.out)
        if (out / "events.parquet").exists() and not args.force:
            print(f"{out} already holds a dataset; pass --force to regenerate it", file=sys.stderr)
            return 1
        config = PRESETS[args.preset]
        if args.seed is not None:
            config = dataclasses.replace(config, seed=args.seed)
        fields = {f.name: f for f in dataclasses.fields(config)}
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep or name not in fields:
                parser.error(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
            kind = type(getattr(config, name))
            try:
                config = dataclasses.replace(config, **{name: kind(value)})
            except (TypeError, ValueError) as err:
                parser.error(f"--set {item!r}: {err}")
        summary = generate(config, out)
        print(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list))))
        return 0

    from lemur.data.schema import validate_dataset

    docs, events = validate_dataset(args.root)
    print(f"{args.root}: OK ({docs.num_rows} documents, {events.num_rows} events)")
    return 0


# `lemur --help`: LightningCLI's own help knows only its four subcommands; `run` and `data` are lemur's own
# parsers (they run without importing Lightning), so the overview of every verb is written here.
VERBS = (
    ("fit", "train a recipe, then test its best checkpoint: lemur fit -c recipes/lemur.yaml [-c override.yaml]"),
    ("validate", "evaluate a checkpoint on the validation days: lemur validate -c RECIPE --ckpt_path CKPT"),
    ("test", "evaluate a checkpoint on the test days: lemur test -c RECIPE --ckpt_path CKPT"),
    ("predict", "score the test days to Parquet: lemur predict -c RECIPE --ckpt_path CKPT --predictions.output_path F"),
    ("run", "run a suite of recipes x seeds and write a comparison report: lemur run recipes/suites/SUITE.yaml"),
    ("data", "make and check datasets: lemur data synth | validate | movielens-100k | mind | ... (lemur data --help)"),
)


def usage() -> str:
    width = max(len(verb) for verb, _ in VERBS)
    lines = ["usage: lemur VERB [options]   (lemur VERB --help shows a verb's options)", "", "verbs:"]
    lines += [f"  {verb:<{width}}  {text}" for verb, text in VERBS]
    lines += ["", "Recipes are YAML files composed with -c (later files and --key value win); see README.md."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from lemur.data.schema import SchemaError

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    try:
        if args and args[0] == "data":
            return _data_main(args[1:])
        if args and args[0] == "run":
            from lemur.suite import main as run_main

            return run_main(args[1:])
        from lemur.trainer_cli import run_cli

        return run_cli(argv)  # None: LightningCLI reads sys.argv itself; bad recipes, interrupts -> exit status
    except SchemaError as err:
        print(f"lemur: bad input data: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
