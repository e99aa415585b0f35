"""DAN: multi-kernel maximum mean discrepancy between source and target features.

Long et al., "Learning Transferable Features with Deep Adaptation Networks", ICML 2015;
Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.

The kernel is an equal-weight sum of Gaussian kernels ``exp(-||x - y||^2 / (s * m))`` whose bandwidths are
multiples ``s`` of ``m``, the mean pairwise squared distance in the joint batch (detached, so the bandwidth is
not a way to shrink the loss). The biased (V-statistic) estimator
``mean K(s, s') + mean K(t, t') - 2 mean K(s, t)`` is >= 0, zero for identical batches and symmetric in
source and target.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def gaussian_kernel_sum(x: torch.Tensor, scales: Sequence[float]) -> torch.Tensor:
    """The multi-kernel Gram matrix [N, N] of the rows of ``x``."""
    d2 = torch.cdist(x, x).pow(2)
    n = x.shape[0]
    base = (d2.detach().sum() / max(n * (n - 1), 1)).clamp_min(1e-8)
    return sum(torch.exp(-d2 / (s * base)) for s in scales) / len(scales)


def mk_mmd(f_s: torch.Tensor, f_t: torch.Tensor, scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> torch.Tensor:
    """Squared MK-MMD between two batches of features ([B_s, D], [B_t, D])."""
    k = gaussian_kernel_sum(torch.cat([f_s, f_t]), scales)
    n = f_s.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


class MultipleKernelMMD(nn.Module):
    """``loss = MultipleKernelMMD()(f_s, f_t)``; stateless (the kernel scales are fixed at construction)."""

    def __init__(self, scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> None:
        super().__init__()
        self.scales = tuple(float(s) for s in scales)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        return mk_mmd(f_s, f_t, self.scales)
