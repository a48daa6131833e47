"""Two-stage baseline through the CLI: SQDC-only pretraining, then a ranker on the frozen encoders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lemur.cli import LemurCLI
from lemur.data.synth import PRESETS, generate
from lemur.systems import ContrastivePretrainer, LemurRanker

REPO = Path(__file__).resolve().parents[2]
COMMON = [
    "--trainer.logger",
    "false",
    "--trainer.max_steps",
    "3",
    "--trainer.enable_progress_bar",
    "false",
    "--test_after_fit",
    "false",
]


def _encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(("query_encoder.", "doc_encoder."))
    }


@pytest.mark.slow
def test_stage2_loads_and_freezes_the_stage1_encoders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lemur"])
    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    base = [
        "-c",
        str(REPO / "recipes/lemur.yaml"),
        "-c",
        str(REPO / "recipes/tiny.yaml"),
        "--data.init_args.root",
        str(tmp_path / "tiny"),
    ]

    stage1 = LemurCLI(args=["fit", *base, "-c", str(REPO / "recipes/two_stage/stage1_pretrain.yaml"), *COMMON])
    assert isinstance(stage1.model, ContrastivePretrainer) and stage1.trainer.global_step == 3
    assert "val/qauc" in stage1.trainer.callback_metrics
    ckpt = stage1.trainer.checkpoint_callback.last_model_path
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    pretrained = {k: v for k, v in saved.items() if k.startswith(("query_encoder.", "doc_encoder."))}

    stage2 = LemurCLI(
        args=[
            "fit",
            *base,
            "-c",
            str(REPO / "recipes/two_stage/stage2_frozen.yaml"),
            "--model.init_args.encoder_checkpoint",
            ckpt,
            *COMMON,
        ]
    )
    model = stage2.model
    assert isinstance(model, LemurRanker) and stage2.trainer.global_step == 3
    after = _encoder_state(model)
    assert after.keys() == pretrained.keys()
    for key, value in pretrained.items():  # loaded from stage 1 and unchanged by stage 2's training
        torch.testing.assert_close(after[key], value, msg=key)
    assert not any(p.requires_grad for p in model.encoder_parameters())
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_missing_or_mismatched_encoder_checkpoint_is_reported(tmp_path: Path) -> None:
    from lemur.encoders import DocumentEncoder, TransformerTextEncoder
    from lemur.ranking import FeatureConfig, MLPBackbone
    from lemur.systems.ranker import load_encoders

    def build(hidden: int) -> LemurRanker:
        text = lambda types: TransformerTextEncoder(
            num_layers=1, hidden_dim=hidden, num_heads=2, ffn_dim=16, num_types=types, out_dim=8
        )
        return LemurRanker(
            backbone=MLPBackbone,
            features=FeatureConfig(token_dim=8, user_buckets=10, doc_buckets=10, cat_buckets=10),
            query_encoder=text(1),
            doc_encoder=DocumentEncoder({"text": text(5)}, out_dim=8),
            freeze_encoders=True,
        )

    with pytest.raises(FileNotFoundError, match="encoder_checkpoint"):
        load_encoders(build(8), str(tmp_path / "nope.ckpt"))
    torch.save({"state_dict": build(16).state_dict()}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="does not match"):
        load_encoders(build(8), str(tmp_path / "other.ckpt"))
    torch.save({"state_dict": {"backbone.x": torch.zeros(1)}}, tmp_path / "empty.ckpt")
    with pytest.raises(ValueError, match="holds no 'query_encoder"):
        load_encoders(build(8), str(tmp_path / "empty.ckpt"))
