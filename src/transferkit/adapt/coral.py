"""Deep CORAL: align second-order statistics of source and target features.

Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV-W 2016.
The paper's loss is ``||C_s - C_t||_F^2 / (4 d^2)``; we use the mean squared difference of the covariance
matrices (``||C_s - C_t||_F^2 / d^2``, the paper's value times 4) plus the mean squared difference of the
means, so that a pure shift of the features is penalised too.
"""
from __future__ import annotations

import torch
from torch import nn


def covariance(f: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance [D, D] of a batch of features [B, D]."""
    centred = f - f.mean(0, keepdim=True)
    return centred.T @ centred / max(f.shape[0] - 1, 1)


def coral_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of covariances plus mean squared difference of means (a scalar >= 0)."""
    mean_diff = (f_s.mean(0) - f_t.mean(0)).pow(2).mean()
    cov_diff = (covariance(f_s) - covariance(f_t)).pow(2).mean()
    return mean_diff + cov_diff


class CorrelationAlignmentLoss(nn.Module):
    """``loss = CorrelationAlignmentLoss()(f_s, f_t)``; stateless."""

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        return coral_loss(f_s, f_t)
