"""Reliability (docs/reliability.md), fast checks: checkpoint lookup, the data position and RNG
states a checkpoint holds, MLflow failures that never stop training, clear errors for bad recipes
and options, skipped images and cut text counted. Runs that train are in tests/test_reliability_fit.py."""

from __future__ import annotations

import io
import os
import re
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
import torch

from conftest import make_tables, write_dataset
from lemur.callbacks.resume import rng_states, set_rng_states
from lemur.cli import main
from lemur.data.datamodule import LemurDataModule, ResumableSampler
from lemur.data.tokenize import TokenizerConfig
from lemur.tracking import SafeMLFlowLogger
from lemur.trainer_cli import find_last_checkpoint

REPO = Path(__file__).resolve().parents[1]
BASE, TINY = REPO / "recipes" / "lemur.yaml", REPO / "recipes" / "tiny.yaml"


# ------------------------------------------------------------------------------ --ckpt_path last
def _touch(path: Path, when: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (when, when))
    return path


def test_find_last_checkpoint_picks_the_newest_in_lemurs_layouts(tmp_path: Path) -> None:
    now = time.time()
    assert find_last_checkpoint(tmp_path / "runs") is None
    _touch(tmp_path / "runs/1/aaa/checkpoints/last.ckpt", now - 30)
    newest = _touch(tmp_path / "runs/1/bbb/checkpoints/last.ckpt", now - 10)
    _touch(tmp_path / "runs/1/bbb/checkpoints/best-epoch=0-step=4.ckpt", now)  # not a "last"
    _touch(tmp_path / "runs/checkpoints/last.ckpt", now - 20)  # the layout without a logger
    assert find_last_checkpoint(tmp_path / "runs") == newest
    versioned = _touch(tmp_path / "runs/2/ccc/checkpoints/last-v1.ckpt", now - 5)
    assert find_last_checkpoint(tmp_path / "runs") == versioned
    own = _touch(tmp_path / "mine/last.ckpt", now - 100)
    assert find_last_checkpoint(tmp_path / "runs", dirpath=tmp_path / "mine") == own  # --checkpoint.dirpath wins


def _fit_args(*extra: str) -> list[str]:
    return ["fit", "-c", str(BASE), "-c", str(TINY), "--trainer.logger", "false", *extra]


def test_ckpt_path_errors_exit_2_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lemur"])
    assert main(_fit_args("--ckpt_path", str(tmp_path / "nope.ckpt"))) == 2
    err = capsys.readouterr().err
    assert "--ckpt_path" in err and "nope.ckpt" in err and "Traceback" not in err
    assert main(["test", "-c", str(BASE), "-c", str(TINY), "--trainer.logger", "false", "--ckpt_path", "last"]) == 2
    err = capsys.readouterr().err
    assert "no last.ckpt under runs" in err and "Traceback" not in err
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    assert main(_fit_args("--ckpt_path", str(tmp_path / "bad.ckpt"))) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------------------------ recipe errors
@pytest.mark.parametrize(
    "override, where, words",
    [
        ("model:\n  init_args:\n    sqdc_wieght: 0.2\n", "model.sqdc_wieght: 0.2", ["sqdc_wieght", "not accepted"]),
        (
            "model:\n  init_args:\n    backbone:\n      class_path: lemur.ranking.NoSuchBackbone\n",
            "model.backbone.class_path: lemur.ranking.NoSuchBackbone",
            ["NoSuchBackbone"],
        ),
        (
            "data:\n  init_args:\n    batch_size: lots\n",
            "data.batch_size: lots",
            ["batch_size", "Expected a <class 'int'>", "lots"],
        ),
        (
            "model:\n  init_args:\n    memory_bank:\n      class_path: lemur.memory.ReplicatedMemoryBank\n"
            "      init_args: {capacity: 8192, dim: 64}\n",
            "model.memory_bank.dim: 64",
            ["memory_bank.dim=64", "doc_encoder.out_dim=128"],
        ),
    ],
)
def test_bad_recipe_names_key_value_file_and_line(
    override: str,
    where: str,
    words: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lemur"])
    recipe = tmp_path / "override.yaml"
    recipe.write_text(override)
    assert main(_fit_args("-c", str(recipe))) == 2
    err = capsys.readouterr().err
    assert err.startswith("lemur: bad recipe or option:"), err
    assert "Traceback" not in err and "Given value type" not in err and "Subtypes" not in err, err
    assert re.search(rf"{re.escape(str(recipe))}:\d+: {re.escape(where)}", err), err
    for word in words:
        assert word in err, (word, err)


def test_bad_option_on_the_command_line_is_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lemur"])
    assert main(_fit_args("--trainer.max_steps", "ten")) == 2
    err = capsys.readouterr().err
    assert "max_steps" in err and "ten" in err and "command line: --trainer.max_steps ten" in err


def test_a_bad_value_is_explained_by_key_value_and_place(capsys: pytest.CaptureFixture) -> None:
    """jsonargparse's union-of-subtypes dump is not shown: the key, the value and where it was given are."""
    recipes = Path(__file__).resolve().parents[1] / "recipes"
    argv = [
        "fit",
        "-c",
        str(recipes / "lemur.yaml"),
        "-c",
        str(recipes / "tiny.yaml"),
        "--data.init_args.batch_size",
        "lots",
    ]
    code = main(argv)
    text = capsys.readouterr().err
    assert code != 0 and "Traceback" not in text
    assert "batch_size" in text and "lots" in text and "command line: --data.init_args.batch_size lots" in text
    assert "Subtypes" not in text and "Given value type" not in text and "NoneType" not in text


# ------------------------------------------------------------------------------ data position
def test_resumable_sampler_continues_mid_epoch_and_splits_like_distributed_sampler() -> None:
    data = list(range(103))
    whole = ResumableSampler(data, batch_size=10, seed=3)
    whole.set_epoch(2)
    order = list(whole)
    assert sorted(order) == data and len(whole) == 103
    resumed = ResumableSampler(data, batch_size=10, seed=3)
    resumed.start_at(2, batches_done=4)
    assert list(resumed) == order[40:] and len(resumed) == 103  # the rest of the epoch; len stays the full epoch
    resumed.set_epoch(3)
    assert list(resumed) == list(ResumableSampler(data, batch_size=10, seed=3, epoch_source=lambda: 3))
    # epoch_source (the trainer's epoch) numbers later passes, whatever set_epoch said
    counted = ResumableSampler(data, batch_size=10, seed=3, epoch_source=lambda: 2)
    counted.set_epoch(7)
    assert list(counted) == order
    # two ranks: disjoint halves of the same permutation (DistributedSampler's split), resumable per rank
    ranks = [ResumableSampler(data, batch_size=10, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(2)
    parts = [list(r) for r in ranks]
    assert set(parts[0]) | set(parts[1]) == set(data) and len(parts[0]) == len(parts[1]) == 52
    again = ResumableSampler(data, batch_size=10, num_replicas=2, rank=1, seed=3)
    again.start_at(2, 3)
    assert list(again) == parts[1][30:]


def _dm(root: Path, **kwargs) -> LemurDataModule:
    dm = LemurDataModule(
        root=str(root),
        batch_size=8,
        eval_batch_size=50,
        num_workers=0,
        tokenizer=TokenizerConfig(fields={"title": 8, "ocr": 8}, query_len=4),
        **kwargs,
    )
    dm.setup("fit")
    return dm


def test_datamodule_state_records_the_data_position_and_restores_it(handmade_dataset: Path) -> None:
    dm = _dm(handmade_dataset)
    first = [b["doc_index"].tolist() for b in dm.train_dataloader()]
    trainer = SimpleNamespace(
        state=SimpleNamespace(fn="fit"),
        num_training_batches=len(first),
        world_size=1,
        global_rank=0,
        current_epoch=0,
        fit_loop=SimpleNamespace(
            epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(current=SimpleNamespace(processed=3)))
        ),
    )
    dm.trainer = trainer
    dm.train_dataloader()
    state = dm.state_dict()
    assert state["train_sampler"] == {
        "seed": 0,
        "epoch": 0,
        "batches_done": 3,
        "epoch_finished": False,
        "batch_size": 8,
        "world_size": 1,
    }
    fresh = _dm(handmade_dataset)
    fresh.trainer = trainer
    fresh.load_state_dict(state)
    assert [b["doc_index"].tolist() for b in fresh.train_dataloader()] == first[3:]
    # an epoch-end state resumes at the next epoch's first batch
    done = dict(state["train_sampler"], batches_done=len(first), epoch_finished=True)
    fresh.load_state_dict({"train_sampler": done})
    next_epoch = ResumableSampler(list(range(len(fresh.splits["train"]))), 8, seed=0)
    next_epoch.set_epoch(1)
    rows = fresh.splits["train"][list(next_epoch)[:8]]
    assert next(iter(fresh.train_dataloader()))["label"].tolist() == fresh.store.label[rows].astype(np.float32).tolist()
    # another batch size: the epoch restarts, with a warning
    fresh.load_state_dict({"train_sampler": dict(state["train_sampler"], batch_size=16)})
    with pytest.warns(UserWarning, match="restarts from its first batch"):
        loader = fresh.train_dataloader()
    assert [b["doc_index"].tolist() for b in loader] == first


def test_rng_states_round_trip_through_a_weights_only_checkpoint() -> None:
    buf = io.BytesIO()
    torch.save({"rng": rng_states()}, buf)
    expected = (torch.rand(4), np.random.rand(3), __import__("random").random())
    buf.seek(0)
    set_rng_states(torch.load(buf, weights_only=True)["rng"])  # what LightningCLI's own checkpoint read accepts
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and __import__("random").random() == expected[2]


# ------------------------------------------------------------------------------ skipped content
def test_broken_and_missing_images_are_counted_and_warned_once(tmp_path: Path) -> None:
    docs, events = make_tables()
    images = docs["image"].to_pylist()
    images[1], images[2] = b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20  # undecodable, truncated
    docs = docs.set_column(docs.column_names.index("image"), "image", pa.array(images, pa.binary()))
    dm = _dm(write_dataset(tmp_path / "ds", docs, events), image_size=8)
    batch = dm.store.batch(np.arange(len(dm.store.label)))
    doc = batch["doc_index"].numpy()
    np.testing.assert_array_equal(batch["doc_image_status"].numpy(), np.where(np.isin(doc, [1, 2]), 1, 0))
    with pytest.warns(UserWarning, match="undecodable image bytes") as record:
        dm.on_after_batch_transfer(batch, 0)
        dm.on_after_batch_transfer(batch, 0)
    assert len([w for w in record if "undecodable" in str(w.message)]) == 1
    assert dm.data_issues["documents_with_bad_images"] == 2
    assert dm.data_issues["images_skipped"] == 2 * int(np.isin(doc, [1, 2]).sum())

    # image_path files: a missing one is counted at set-up and flagged as such in batches
    root = tmp_path / "paths"
    (root / "img").mkdir(parents=True)
    good = images[3]
    paths = []
    for i in range(docs.num_rows):
        if i != 5:
            (root / "img" / f"{i}.png").write_bytes(good)
        paths.append(f"img/{i}.png")
    docs_paths = docs.drop_columns(["image"]).append_column("image_path", pa.array(paths))
    with pytest.warns(UserWarning, match=r"1 of 40 image files are missing \(first: row 5"):
        dm = _dm(write_dataset(root, docs_paths, events), image_size=8)
    assert dm.data_issues["image_files_missing"] == 1
    batch = dm.store.documents(np.array([4, 5]))
    assert batch["doc_image_status"].tolist() == [0, 2] and batch["doc_image_mask"].tolist() == [True, False]


def test_huge_text_is_cut_and_counted(tmp_path: Path) -> None:
    docs, events = make_tables()
    titles = docs["title"].to_pylist()
    titles[4] = "apple " * 400_000  # 2.4 MB
    docs = docs.set_column(docs.column_names.index("title"), "title", pa.array(titles))
    with pytest.warns(UserWarning, match="values longer than 512 characters were cut"):
        dm = _dm(write_dataset(tmp_path / "ds", docs, events))
    assert dm.data_issues["text_values_cut"] == 1
    tokens = dm.store.docs.ids[4][dm.store.docs.mask[4]]
    assert len(tokens) == 1 + 8 + 1 + (dm.store.docs.mask[4].sum() - 10)  # CLS + the 8-token title budget + SEP + ocr
    assert (tokens[1:9] == tokens[1]).all()  # eight "apple" tokens


# ------------------------------------------------------------------------------ MLflow failures
def _runtime_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "MLflow tracking" in str(w.message)]


def test_unusable_tracking_store_warns_once_and_goes_offline(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        logger = SafeMLFlowLogger(experiment_name="lemur", tracking_uri=f"sqlite:///{blocker}/sub/mlruns.db")
        assert logger.run_id is None and logger.name == "offline"
        version = logger.version
        assert re.fullmatch(r"\d{8}-\d{6}-\d+", version) and logger.version == version
        logger.log_hyperparams({"a": 1})
        logger.log_metrics({"train/loss": 0.5}, step=1)
        logger.experiment.log_text(logger.run_id, "x", "recipe.yaml")
        logger.after_save_checkpoint(SimpleNamespace())
        logger.finalize("success")
    assert len(_runtime_warnings(record)) == 1, _runtime_warnings(record)
    assert logger.failure and "opening the tracking store" in _runtime_warnings(record)[0]


@pytest.fixture(scope="module")
def tracking_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlruns.db'}"
    _ = SafeMLFlowLogger(experiment_name="lemur", tracking_uri=uri).run_id  # create the schema once
    return uri


def test_tracking_failing_mid_run_warns_once_and_never_raises(
    tracking_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = SafeMLFlowLogger(experiment_name="lemur", tracking_uri=tracking_db)
    run_id = logger.run_id
    logger.log_metrics({"train/loss": 1.0}, step=1)
    calls = []

    def locked(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(logger._mlflow_client, "log_batch", locked)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for step in range(2, 6):
            logger.log_metrics({"train/loss": 1.0}, step=step)
        logger.log_hyperparams({"b": 2})
        logger.experiment.log_artifact(run_id, __file__)
        logger.finalize("success")
    assert len(calls) == 1, "after the first failure MLflow is not called again"
    messages = _runtime_warnings(record)
    assert len(messages) == 1 and "database is locked" in messages[0] and "log_batch" in messages[0]
    assert logger.name is not None and logger.version == run_id  # the checkpoint folder does not move


def test_losing_the_race_to_create_the_experiment_joins_it(tracking_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs starting together both find no experiment; the one whose create_experiment then fails with
    RESOURCE_ALREADY_EXISTS looks it up again instead of going on untracked."""
    import mlflow

    mlflow.MlflowClient(tracking_db).create_experiment("raced")  # what the other process just did
    logger = SafeMLFlowLogger(experiment_name="raced", tracking_uri=tracking_db)
    real = type(logger._mlflow_client).get_experiment_by_name
    lookups = []

    def stale_once(self, name):  # the first lookup ran before the other process created it
        lookups.append(name)
        return None if len(lookups) == 1 else real(self, name)

    monkeypatch.setattr(type(logger._mlflow_client), "get_experiment_by_name", stale_once)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run_id = logger.run_id
    assert run_id and logger.failure is None and not _runtime_warnings(record)
    assert len(lookups) == 2
    experiment = mlflow.MlflowClient(tracking_db).get_experiment_by_name("raced")
    assert mlflow.MlflowClient(tracking_db).get_run(run_id).info.experiment_id == experiment.experiment_id


def test_resuming_into_an_unknown_run_or_with_changed_params(tracking_db: str) -> None:
    import mlflow

    with pytest.warns(UserWarning, match="is not in .* logging to a new run"):
        logger = SafeMLFlowLogger(experiment_name="lemur", tracking_uri=tracking_db, run_id="0" * 32)
        run_id = logger.run_id
    assert run_id and run_id != "0" * 32 and logger.failure is None
    logger.log_hyperparams({"lr": 0.1, "batch_size": 32})
    resumed = SafeMLFlowLogger(experiment_name="lemur", tracking_uri=tracking_db, run_id=run_id)
    with pytest.warns(UserWarning, match=r"already records other values for \['lr'\]"):
        resumed.log_hyperparams({"lr": 0.2, "batch_size": 32, "new": "x"})
    assert resumed.failure is None
    params = mlflow.MlflowClient(tracking_db).get_run(run_id).data.params
    assert params == {"lr": "0.1", "batch_size": "32", "new": "x"}
