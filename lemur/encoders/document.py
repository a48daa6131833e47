"""The document encoder: a dict of modality encoders fused into one vector."""

from __future__ import annotations

import torch
from torch import nn

from lemur.contracts import check_output
from lemur.encoders.base import ImageEncoder, TextEncoder


class DocumentEncoder(nn.Module):
    """Encodes a document from its modalities and fuses them (concatenate -> linear).

    Args:
        modalities: ``{"text": TextEncoder, "image": ImageEncoder, ...}``; drop or add
            a modality in the recipe. Known keys read these batch entries:
            ``text`` -> doc_tokens/doc_mask/doc_types, ``image`` -> doc_image/doc_image_mask
            (a missing image is replaced by a learned vector).
        out_dim: size of the document representation (paper: 128).

    ``forward(batch: dict) -> [B, out_dim]``.
    """

    def __init__(self, modalities: dict[str, nn.Module], out_dim: int = 128) -> None:
        super().__init__()
        unknown = set(modalities) - {"text", "image"}
        if unknown:
            raise ValueError(
                f"DocumentEncoder.modalities: unknown modality {sorted(unknown)}; known: text (TextEncoder), image "
                "(ImageEncoder)"
            )
        if not modalities:
            raise ValueError("DocumentEncoder.modalities: at least one modality is needed")
        for name, enc in modalities.items():
            expected = TextEncoder if name == "text" else ImageEncoder
            if not isinstance(enc, expected):
                raise TypeError(
                    f"DocumentEncoder.modalities['{name}'] must be a {expected.__name__}, got {type(enc).__name__}"
                )
        self.modalities = nn.ModuleDict(modalities)
        self.out_dim = out_dim
        width = sum(m.out_dim for m in modalities.values())
        self.missing_image = nn.Parameter(torch.zeros(modalities["image"].out_dim)) if "image" in modalities else None
        self.fuse = nn.Identity() if (len(modalities) == 1 and width == out_dim) else nn.Linear(width, out_dim)

    @property
    def pretrained(self) -> bool:
        """True when every modality encoder is ``pretrained`` (its weights come from a pretrained
        checkpoint). The fusion Linear, when there is one (several modalities, or a width that differs
        from ``out_dim``), still starts random."""
        return all(getattr(enc, "pretrained", False) for enc in self.modalities.values())

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for name, enc in self.modalities.items():
            if name == "text":
                vec = enc(batch["doc_tokens"], batch["doc_mask"], batch["doc_types"])
                parts.append(
                    check_output(
                        vec,
                        "model.doc_encoder.modalities.text",
                        enc,
                        "TextEncoder",
                        (len(batch["doc_tokens"]), enc.out_dim),
                        "[B, out_dim]",
                    )
                )
            else:
                if "doc_image" not in batch:
                    raise KeyError(
                        "the document encoder has an image modality but batches carry no images: set data.image_size "
                        "in the recipe"
                    )
                vec = check_output(
                    enc(batch["doc_image"]),
                    f"model.doc_encoder.modalities.{name}",
                    enc,
                    "ImageEncoder",
                    (len(batch["doc_image"]), enc.out_dim),
                    "[B, out_dim]",
                )
                parts.append(torch.where(batch["doc_image_mask"][:, None], vec, self.missing_image.to(vec.dtype)))
        return self.fuse(torch.cat(parts, dim=-1))
