"""timm adapter: any timm architecture, its pretrained_cfg drives preprocessing; groups from group_matcher."""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from .base import Backbone, BackboneMeta, ImagePreprocessor, download_failed, unknown_model


def _group_patterns_from_timm(model: nn.Module) -> list[str]:
    """Turn timm's ``group_matcher`` into ordered regexes, one per depth group (fine-grained)."""
    from timm.models import group_parameters

    try:
        matcher = model.group_matcher(coarse=False)
    except (AttributeError, NotImplementedError):
        return []
    grouped = group_parameters(model, matcher)  # {group_id: [param names]} ordered by depth
    patterns = []
    for names in grouped.values():
        patterns.append("^(" + "|".join(re.escape(n) for n in names) + ")$")
    return patterns


class TimmBackbone(Backbone):
    """Wraps a timm model; features are its pre-logits, the classifier is kept as the source head."""

    def __init__(self, model: nn.Module, spec: str, source: str, pretrained: bool,
                 image_size: int | None = None, licence: str | None = None) -> None:
        super().__init__()
        self.model = model
        cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}) or {})
        size = int(image_size or cfg.get("input_size", (3, 224, 224))[-1])
        mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        interp = cfg.get("interpolation", "bicubic")
        n_src = int(getattr(model, "num_classes", 0) or 0)
        self.meta = BackboneMeta(
            spec=spec, modality="image", feature_dim=int(model.num_features), source=source,
            pretrained=pretrained, input_size=size, mean=mean, std=std, interpolation=interp,
            licence=licence or str(cfg.get("license", "unknown")), source_classes=n_src or None,
            extra={"architecture": cfg.get("architecture", type(model).__name__)},
        )
        self.preprocess = ImagePreprocessor(size, mean, std, interp)
        self.group_patterns = ["^model\\." + p[1:] if p.startswith("^") else p for p in _group_patterns_from_timm(model)]
        self.to(memory_format=torch.channels_last)

    def layer_groups(self) -> list[list[str]]:
        """Depth groups from timm's group_matcher, without the source classifier (unused for features)."""
        head = str(getattr(self.model, "pretrained_cfg", {}).get("classifier", "classifier"))
        kept = [[n for n in g if not n.startswith(f"model.{head}.")] for g in super().layer_groups()]
        return [g for g in kept if g]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def source_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.meta.source_classes:
            return None
        return self.model.forward_head(self.model.forward_features(x))


def create_timm(name: str, pretrained: bool = True, image_size: int | None = None, **_: Any) -> TimmBackbone:
    """timm:NAME, e.g. timm:resnet18 (downloads weights from the Hugging Face hub when pretrained)."""
    import timm

    if not timm.is_model(name):
        raise unknown_model("timm", name, timm.list_models(), "timm.list_models()")
    try:
        model = timm.create_model(name, pretrained=pretrained)
    except (OSError, RuntimeError) as e:  # hub download (offline, no cache), or a tag without weights
        raise download_failed(f"timm:{name}", e) from None
    return TimmBackbone(model, f"timm:{name}", "timm", pretrained, image_size)

