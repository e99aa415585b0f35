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
    """``head(backbone(x))``, plus ``lexical(x)`` when a lexical branch is set. For regression the head predicts
    the standardised target; ``target_mean`` / ``target_std`` buffers map it back."""

    def __init__(self, backbone: Backbone, n_out: int, head: str = "linear") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = make_head(backbone.meta.feature_dim, n_out, head)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        # optional lexical branch (engine.lexical.LexicalBranch, the hybrid head's TF-IDF block): reads the raw
        # texts of the batch and adds its logits to the head's
        self.lexical: nn.Module | None = None

    def forward(self, batch: Any) -> torch.Tensor:
        return self.from_features(self.backbone(batch), batch)

    def from_features(self, features: torch.Tensor, batch: Any = None) -> torch.Tensor:
        """The outputs from backbone ``features`` already computed (by this backbone or an engine running it);
        ``batch`` (with its raw texts) is read only by the lexical branch."""
        out = self.head(features)
        if self.lexical is not None:
            out = out + self.lexical(batch).to(out.dtype)
        return out

    def final_linear(self) -> nn.Linear:
        return self.head if isinstance(self.head, nn.Linear) else self.head[-1]
