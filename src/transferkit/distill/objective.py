"""The distillation objective the engine's trainer minimises, and the per-row targets it reads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .losses import distillation_loss, feature_matching_loss


@dataclass
class TransferTargets:
    """What the student learns from, one row per transfer-set example: hard labels (``-1`` where unlabelled), the
    teacher's logits and, for feature matching, the teacher's pooled features. Indexed by a LongTensor of rows."""

    labels: torch.Tensor                      # [N] int64
    logits: torch.Tensor                      # [N, C] float32
    features: torch.Tensor | None = None      # [N, D_teacher] float32

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"labels": self.labels[rows], "logits": self.logits[rows]}
        if self.features is not None:
            out["features"] = self.features[rows]
        return out


class DistillObjective(nn.Module):
    """``alpha * CE + (1 - alpha) * KL_T * T**2 [+ feature_weight * MSE(projection(f_student), f_teacher)]``.

    The projection (``nn.Linear(student_dim, teacher_dim)``, identity-initialised when the widths agree) is a
    parameter of this module, so the trainer optimises and checkpoints it; it is dropped after training.
    """

    def __init__(self, temperature: float, alpha: float, feature_weight: float = 0.0, student_dim: int = 0,
                 teacher_dim: int = 0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.temperature, self.alpha, self.feature_weight = float(temperature), float(alpha), float(feature_weight)
        self.label_smoothing = float(label_smoothing)
        self.projection: nn.Linear | None = None
        if self.feature_weight > 0:
            self.projection = nn.Linear(student_dim, teacher_dim)
            if student_dim == teacher_dim:
                with torch.no_grad():
                    self.projection.weight.copy_(torch.eye(student_dim))
                    self.projection.bias.zero_()

    def forward(self, model: nn.Module, batch: tuple[Any, dict[str, torch.Tensor]], state: Any = None
                ) -> dict[str, torch.Tensor]:
        x, t = batch
        features = model.backbone(x)
        logits = model.head(features)
        if getattr(model, "lexical", None) is not None:
            logits = logits + model.lexical(x).to(logits.dtype)
        losses = distillation_loss(logits, t["logits"], t["labels"], self.temperature, self.alpha,
                                   self.label_smoothing)
        if self.projection is None:
            return losses
        match = feature_matching_loss(self.projection(features.float()), t["features"])
        return {"loss": losses["loss"] + self.feature_weight * match, "hard": losses["hard"], "soft": losses["soft"],
                "feature": match}


__all__ = ["DistillObjective", "TransferTargets"]
