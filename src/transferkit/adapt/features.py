"""Frozen-feature mode: adaptation on top of cached backbone features, through a trainable MLP bottleneck.

For large backbones on CPU (MiniLM trains at about 14 examples/s here) end-to-end adaptation is too slow; the
backbone's features are extracted once (through the feature cache) and the adaptation losses act on the output
of a small bottleneck ``Linear -> ReLU -> Dropout`` that is trained with the head. Nothing inside the frozen
backbone adapts, so gains are bounded by what a re-mapping of its features can do.
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.base import Backbone, BackboneMeta


class FeatureBottleneck(Backbone):
    """The trainable part in frozen mode; its inputs are the frozen backbone's features [B, in_dim]."""

    def __init__(self, frozen: BackboneMeta, dim: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(frozen.feature_dim, dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.preprocess = None
        self.meta = BackboneMeta(spec=f"frozen:{frozen.spec}+mlp{dim}", modality=frozen.modality, feature_dim=dim,
                                 source="frozen-features", pretrained=False, input_size=frozen.input_size,
                                 max_length=frozen.max_length, licence=frozen.licence,
                                 extra={"frozen_backbone": frozen.spec, "frozen_feature_dim": frozen.feature_dim})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def describe_preprocessing(self) -> dict:
        return {"input": f"frozen features of {self.meta.extra['frozen_backbone']}"}
