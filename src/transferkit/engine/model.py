"""The trainable model: a backbone plus a task head. What every run saves."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..backbones.base import Backbone


def make_head(in_dim: int, out_dim: int, kind: str = "linear") -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Dropout(0.1), nn.Linear(in_dim, out_dim))
    return nn.Linear(in_dim, out_dim)


class TransferModel(nn.Module):
    """``head(backbone(x))``. For regression the head predicts the standardised target;
    ``target_mean`` / ``target_std`` buffers map it back."""

    def __init__(self, backbone: Backbone, n_out: int, head: str = "linear") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = make_head(backbone.meta.feature_dim, n_out, head)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.lexical: nn.Module | None = None  # optional engine.lexical.LexicalHead, added to the outputs

    def add_lexical(self, texts, outputs):
        """Add the lexical branch's outputs (if any) for the raw ``texts`` of a batch."""
        if self.lexical is None:
            return outputs
        return outputs + torch.as_tensor(self.lexical.outputs(texts), dtype=outputs.dtype)

    def forward(self, batch: Any) -> torch.Tensor:
        return self.head(self.backbone(batch))

    def final_linear(self) -> nn.Linear:
        return self.head if isinstance(self.head, nn.Linear) else self.head[-1]
