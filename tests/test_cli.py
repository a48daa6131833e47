"""The ``lemur`` console script: a real one-step ``lemur fit`` in a subprocess (slow) that leaves one
MLflow run with params, metrics and the recipe; the tracking URI; ``lemur data validate``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import make_tables, write_dataset
from lemur.cli import DEFAULT_TRACKING_URI, LemurCLI, main, tracking_uri

REPO = Path(__file__).resolve().parents[1]
BASE, TINY = REPO / "recipes" / "lemur.yaml", REPO / "recipes" / "tiny.yaml"


def lemur_script() -> str:
    """The console script of this environment (the venv's sibling of the running Python first)."""
    sibling = Path(sys.executable).with_name("lemur")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("lemur")
    assert found, "the `lemur` console script is not installed (pip install -e .)"
    return found


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LEMUR-Synth `tiny` made by `lemur data synth` when the generator is there, else the hand-made data."""
    out = tmp_path_factory.mktemp("data") / "synth-tiny"
    try:
        import lemur.data.synth  # noqa: F401

        code = main(["data", "synth", "--preset", "tiny", "--out", str(out)])
        if code == 0 and (out / "events.parquet").exists():
            return out
    except Exception:  # the generator is tested on its own (tests/data/test_synth.py)
        pass
    return write_dataset(tmp_path_factory.mktemp("data") / "handmade", *make_tables())


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(extra)
    return env


def _fit(cwd: Path, dataset: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        lemur_script(),
        "fit",
        "-c",
        str(BASE),
        "-c",
        str(TINY),
        "--data.init_args.root",
        str(dataset),
        "--trainer.max_steps",
        "2",
        *extra,
    ]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out


def _summary_metric(stdout: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}\s+(-?[0-9.]+)\s*$", stdout, flags=re.MULTILINE)
    assert match, f"no {name} in the run summary:\n{stdout[-2000:]}"
    return float(match.group(1))


def _only_run(uri: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("lemur")
    assert experiment is not None, f"no experiment 'lemur' at {uri}"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, f"expected one run, found {len(runs)}"
    return client, runs[0]


# ------------------------------------------------------------------------------ lemur fit (slow)
@pytest.mark.slow
def test_fit_one_step_through_the_console_script(tmp_path: Path, dataset: Path) -> None:
    out = _fit(tmp_path, dataset, _env())
    summary = out.stdout[out.stdout.index("lemur run summary") :]
    for name in ("test/auc", "test/qauc", "test/gauc"):
        assert 0.0 <= _summary_metric(summary, name) <= 1.0
    assert re.search(r"^train rows\s+64\s*$", summary, flags=re.MULTILINE), "2 steps x batch 32"

    db = tmp_path / "mlruns.db"
    assert db.exists(), "the default tracking store is sqlite:///mlruns.db in the working directory"
    assert f"--backend-store-uri {DEFAULT_TRACKING_URI}" in summary
    client, run = _only_run(f"sqlite:///{db}")
    assert run.info.run_id in summary
    assert run.info.status == "FINISHED"

    params = run.data.params  # the whole resolved recipe, under readable prefixes (lemur.run_record)
    assert params["data.root"] == str(dataset)
    assert params["data.batch_size"] == "32"  # tiny.yaml wins over the base
    assert params["model.features.token_dim"] == "64"
    assert params["model.backbone.class"] == "lemur.ranking.MLPBackbone"
    assert params["seed"] == "0"
    assert params["trainer.max_steps"] == "2" and params["trainer.precision"] == "32-true"
    assert params["trainer.devices"] == "1" and params["trainer.max_epochs"] == "1"
    assert params["callbacks.MemoryBankCallback.warm_start"] == "False"
    assert params["callbacks.checkpoint.monitor"] == "val/auc"
    assert not any(k.startswith("_") or "._" in k or "instantiator" in k for k in params), sorted(params)
    assert not any(k.startswith("trainer.logger") or k.startswith("trainer.callbacks") for k in params)
    assert run.info.run_name == "lemur+tiny-seed0"
    tags = run.data.tags
    assert tags["lemur.recipes"] == f"{BASE}, {TINY}"
    assert tags["lemur.version"] and tags["lemur.host"]
    assert re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"])
    assert tags["lemur.git_dirty"] in ("dirty", "clean")
    assert f"#/experiments/{run.info.experiment_id}/runs?workflowType=machine_learning" in summary

    metrics = run.data.metrics
    for name in ("test/auc", "test/qauc", "test/gauc", "val/auc", "train/loss"):
        assert name in metrics, f"{name} not in {sorted(metrics)}"
    assert abs(metrics["test/auc"] - _summary_metric(summary, "test/auc")) < 1e-4
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2  # log_every_n_steps: 1

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"recipe.yaml", "summary.txt"} <= artifacts
    recipe = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "recipe.yaml", str(tmp_path))).read_text())
    assert recipe["model"]["class_path"] == "lemur.systems.LemurRanker"
    assert recipe["data"]["init_args"]["root"] == str(dataset)
    assert recipe["trainer"]["max_steps"] == 2  # the command line wins over tiny.yaml's 4

    best = re.search(r"^best checkpoint: (\S+)$", summary, flags=re.MULTILINE)
    assert best and (tmp_path / best.group(1)).is_file()
    assert (tmp_path / best.group(1)).is_relative_to(tmp_path / "runs")

    # predict with the training recipe, as the README prints it: its callbacks and logger are skipped by themselves
    scores = tmp_path / "scores.parquet"
    cmd = [lemur_script(), "predict", "-c", str(BASE), "-c", str(TINY), "--data.init_args.root", str(dataset),
           "--ckpt_path", best.group(1), "--predictions.output_path", str(scores)]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert pq.read_table(scores).num_rows > 0
    assert len(client.search_runs([run.info.experiment_id])) == 1, "predict logs no MLflow run"


@pytest.mark.slow
def test_fit_honours_mlflow_tracking_uri(tmp_path: Path, dataset: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    uri = f"sqlite:///{elsewhere / 'tracking.db'}"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = _fit(cwd, dataset, _env(MLFLOW_TRACKING_URI=uri), "--trainer.max_steps", "1", "--test_after_fit", "false")
    assert not (cwd / "mlruns.db").exists()
    assert (elsewhere / "tracking.db").exists()
    assert uri in out.stdout
    _, run = _only_run(uri)
    assert "train/loss" in run.data.metrics
    assert not any(k.startswith("test/") for k in run.data.metrics), "--test_after_fit false skips the test"


# ------------------------------------------------------------------------------ fast checks
def test_tracking_uri_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lightning.pytorch.loggers import MLFlowLogger

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lemur"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == DEFAULT_TRACKING_URI == "sqlite:///mlruns.db"
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking_uri() == uri
    cli = LemurCLI(args=["-c", str(BASE), "-c", str(TINY)], run=False)
    assert isinstance(cli.trainer.logger, MLFlowLogger)
    assert cli.trainer.logger._tracking_uri == uri
    assert cli.trainer.logger._experiment_name == "lemur"
    assert not (tmp_path / "mlruns.db").exists(), "constructing the CLI must not touch the default store"


def test_data_validate_ok(handmade_dataset: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "validate", str(handmade_dataset)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "40 documents" in out and f"{make_tables()[1].num_rows} events" in out


def test_data_validate_bad_label(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    docs, events = make_tables()
    labels = events["label"].to_pylist()
    labels[21] = 3
    events = events.set_column(events.column_names.index("label"), "label", pa.array(labels, events["label"].type))
    root = write_dataset(tmp_path / "bad", docs, events)
    code = main(["data", "validate", str(root)])
    assert code != 0
    captured = capsys.readouterr()
    assert "OK" not in captured.out
    assert "events.parquet" in captured.err and "'label'" in captured.err
    assert "row 21" in captured.err and "value 3" in captured.err


def test_data_validate_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "validate", str(tmp_path / "nope")]) != 0
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
def test_data_validate_through_the_console_script(handmade_dataset: Path, tmp_path: Path) -> None:
    good = subprocess.run(
        [lemur_script(), "data", "validate", str(handmade_dataset)], capture_output=True, text=True, timeout=120
    )
    assert good.returncode == 0 and "OK" in good.stdout, good.stderr[-2000:]
    bad = tmp_path / "bad"
    shutil.copytree(handmade_dataset, bad)
    (bad / "docs.parquet").write_text("not parquet")
    out = subprocess.run([lemur_script(), "data", "validate", str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "docs.parquet" in out.stderr and "Traceback" not in out.stderr


def test_fit_with_bad_data_exits_with_the_schema_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A SchemaError raised inside fit (DataModule.setup) becomes a clean non-zero exit."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lemur"])
    code = main(
        [
            "fit",
            "-c",
            str(BASE),
            "-c",
            str(TINY),
            "--data.init_args.root",
            str(tmp_path / "missing"),
            "--trainer.logger",
            "false",
            "--trainer.max_steps",
            "1",
        ]
    )
    assert code != 0
    assert "missing" in capsys.readouterr().err


def test_data_synth_refuses_to_overwrite(dataset: Path, capsys: pytest.CaptureFixture) -> None:
    if not (dataset / "synth.json").exists():
        pytest.skip("lemur.data.synth is not available; the hand-made data stands in")
    before = pq.read_table(dataset / "events.parquet").num_rows
    assert main(["data", "synth", "--preset", "tiny", "--out", str(dataset)]) == 1
    assert "--force" in capsys.readouterr().err
    assert pq.read_table(dataset / "events.parquet").num_rows == before
    with pytest.raises(SystemExit) as info:
        main(["data", "synth", "--preset", "no-such-preset", "--out", str(dataset / "x")])
    assert info.value.code != 0


def test_data_synth_set_overrides_preset_fields(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    out = tmp_path / "drift"
    assert (
        main(
            [
                "data",
                "synth",
                "--preset",
                "tiny",
                "--out",
                str(out),
                "--set",
                "new_docs_per_day=5",
                "--set",
                "preference_drift=0.1",
            ]
        )
        == 0
    )
    config = json.loads((out / "synth.json").read_text())
    assert (config["config"] if "config" in config else config)["new_docs_per_day"] == 5
    docs = pq.read_table(out / "docs.parquet")
    publish = docs["publish_day"].to_numpy()
    assert int((publish == publish.max()).sum()) == 5, "each later day publishes the set number of new documents"
    for bad, message in (("nope=1", "expected FIELD=VALUE"), ("preference_drift=2", "preference_drift")):
        with pytest.raises(SystemExit):
            main(["data", "synth", "--preset", "tiny", "--out", str(tmp_path / "x"), "--set", bad])
        assert message in capsys.readouterr().err
