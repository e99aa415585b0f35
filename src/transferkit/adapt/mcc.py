"""MCC: minimum class confusion on unlabelled target predictions.

Jin et al., "Minimum Class Confusion for Versatile Domain Adaptation", ECCV 2020.

Predictions are softened with a temperature ``T``; each example is weighted by ``1 + exp(-H(p))`` (certain
predictions count more), weights rescaled to sum to the batch size; the class-confusion matrix
``C = P^T diag(w) P`` is row-normalised and the loss is the off-diagonal mass divided by the number of classes.
It is 0 when every prediction is one-hot and the classes never co-occur in one prediction.
"""
from __future__ import annotations

import torch
from torch import nn


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Per-row Shannon entropy (nats) of probabilities [B, C]."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)


def mcc_loss(logits_t: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    b, c = logits_t.shape
    p = torch.softmax(logits_t / temperature, dim=1)
    w = 1.0 + torch.exp(-entropy(p).detach())
    w = (b * w / w.sum()).unsqueeze(1)
    confusion = (p * w).T @ p
    confusion = confusion / confusion.sum(1, keepdim=True).clamp_min(1e-12)
    return (confusion.sum() - confusion.trace()) / c


class MinimumClassConfusionLoss(nn.Module):
    """``loss = MinimumClassConfusionLoss(2.5)(target_logits)``; stateless."""

    def __init__(self, temperature: float = 2.5) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, logits_t: torch.Tensor) -> torch.Tensor:
        return mcc_loss(logits_t, self.temperature)
