"""User-defined components in an outside package (an encoder, an auxiliary loss, a logit term) are
chosen by class_path, train through the CLI, and the checkpoint reloads with load_from_checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lemur.cli import LemurCLI
from lemur.data.synth import PRESETS, generate
from lemur.systems import LemurRanker

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_user_encoder_by_class_path_trains_and_reloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "tests" / "plugins"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lemur"])
    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    override = tmp_path / "user.yaml"
    override.write_text(
        "model:\n  init_args:\n    query_encoder:\n      class_path: my_components.BagOfWordsEncoder\n"
        "      init_args: {vocab_size: 30522, dim: 16, out_dim: 128}\n"
        "    aux_losses:\n      - class_path: my_components.DocNormLoss\n        init_args: {norm: 1.0, weight: 0.01}\n"
        "    logit_terms:\n      - class_path: my_components.UserBias\n        init_args: {buckets: 10}\n"
    )
    cli = LemurCLI(
        args=[
            "fit",
            "-c",
            str(REPO / "recipes/lemur.yaml"),
            "-c",
            str(REPO / "recipes/tiny.yaml"),
            "-c",
            str(override),
            "--data.init_args.root",
            str(tmp_path / "tiny"),
            "--trainer.logger",
            "false",
            "--trainer.max_steps",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--test_after_fit",
            "false",
        ]
    )
    assert type(cli.model.query_encoder).__name__ == "BagOfWordsEncoder"
    assert cli.trainer.global_step == 2
    ckpt = cli.trainer.checkpoint_callback.last_model_path
    assert ckpt and Path(ckpt).exists()
    reloaded = LemurRanker.load_from_checkpoint(ckpt)
    assert type(reloaded.query_encoder).__name__ == "BagOfWordsEncoder"
    assert [type(m).__name__ for m in (*reloaded.aux_losses, *reloaded.logit_terms)] == ["DocNormLoss", "UserBias"]
    for (name, a), b in zip(cli.model.state_dict().items(), reloaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    # `lemur predict` writes the scores of the test days to Parquet
    out = tmp_path / "pred" / "scores.parquet"
    LemurCLI(
        args=[
            "predict",
            "-c",
            str(REPO / "recipes/lemur.yaml"),
            "-c",
            str(REPO / "recipes/tiny.yaml"),
            "-c",
            str(override),
            "--data.init_args.root",
            str(tmp_path / "tiny"),
            "--trainer.logger",
            "false",
            "--ckpt_path",
            ckpt,
            "--predictions.output_path",
            str(out),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert set(table.column_names) == {"score", "session_id", "user_id", "doc_id", "label"}
    assert table.num_rows == len(cli.datamodule.splits["test"])
    scores = table["score"].to_numpy()
    assert ((scores > 0) & (scores < 1)).all()
