"""torchvision adapter: ``torchvision:NAME`` with the weights' own transforms as preprocessing."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .base import Backbone, BackboneMeta, ImagePreprocessor, download_failed, groups_from_sequence, unknown_model


def _split_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """Find the final Linear classifier (fc / classifier[-1] / heads.head)."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = (name, mod)
    if last is None:
        raise ConfigError("This torchvision model has no Linear classifier to remove; use timm: instead.")
    return last


def _set_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


class TorchvisionBackbone(Backbone):
    def __init__(self, model: nn.Module, name: str, pretrained: bool, image_size: int | None,
                 mean: tuple[float, ...], std: tuple[float, ...], native: int) -> None:
        super().__init__()
        head_name, head = _split_head(model)
        self.source_head = head
        _set_module(model, head_name, nn.Identity())
        self.model = model
        size = int(image_size or native)
        self.preprocess = ImagePreprocessor(size, mean, std, "bilinear")
        self.meta = BackboneMeta(spec=f"torchvision:{name}", modality="image", feature_dim=head.in_features,
                                 source="torchvision", pretrained=pretrained, input_size=size, mean=tuple(mean),
                                 std=tuple(std), interpolation="bilinear", licence="bsd-3-clause",
                                 source_classes=head.out_features, extra={"architecture": name})
        prefixes = []
        for cname, child in model.named_children():
            if isinstance(child, nn.Sequential) and len(child) > 2:
                prefixes += [f"model.{cname}.{i}" for i in range(len(child))]
            elif any(True for _ in child.parameters()):
                prefixes.append(f"model.{cname}")
        self.group_patterns = groups_from_sequence(prefixes)
        self.to(memory_format=torch.channels_last)

    def layer_groups(self) -> list[list[str]]:
        return [[n for n in g if not n.startswith("source_head.")] for g in super().layer_groups()
                if any(not n.startswith("source_head.") for n in g)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def source_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.source_head(self.model(x))


def create_torchvision(name: str, pretrained: bool = True, image_size: int | None = None, **_: Any):
    """torchvision:NAME, e.g. torchvision:resnet18 (downloads weights when pretrained)."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise unknown_model("torchvision", name, torchvision.models.list_models(),
                            "torchvision.models.list_models()") from None
    try:
        model = torchvision.models.get_model(name, weights=weights if pretrained else None)
    except (OSError, RuntimeError) as e:  # weights download (offline), or a damaged cached file
        raise download_failed(f"torchvision:{name}", e) from None
    t = weights.transforms()
    native = int(t.crop_size[0]) if hasattr(t, "crop_size") else 224
    return TorchvisionBackbone(model, name, pretrained, image_size, tuple(t.mean), tuple(t.std), native)
