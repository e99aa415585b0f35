"""Adversarial alignment: gradient reversal, a domain discriminator, DANN and CDAN (+ entropy conditioning).

Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016 (DANN, the reversal-coefficient
schedule ``2 / (1 + exp(-10 p)) - 1``); Long et al., "Conditional Adversarial Domain Adaptation", NeurIPS 2018
(CDAN, CDAN+E).

Everything here is stateless: the reversal coefficient arrives as an explicit ``progress`` in [0, 1], and the
losses return the same type in train and eval mode.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .mcc import entropy


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # type: ignore[override]
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """Identity forward; the backward pass multiplies the gradient by ``-coeff``."""
    return _ReverseGradient.apply(x, float(coeff))


def reversal_coefficient(progress: float, alpha: float = 10.0, high: float = 1.0) -> float:
    """DANN's warm-up schedule: 0 at the start of training, rising smoothly to ``high`` (0.9993 at p = 1)."""
    p = min(max(float(progress), 0.0), 1.0)
    return high * (2.0 / (1.0 + math.exp(-alpha * p)) - 1.0)


class DomainDiscriminator(nn.Module):
    """A small MLP giving one logit per example: > 0 means "source"."""

    def __init__(self, in_dim: int, hidden: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class AdversarialLoss(NamedTuple):
    loss: torch.Tensor
    domain_accuracy: float  # of the discriminator on this batch (0.5 = features indistinguishable)


def _domain_bce(logits_s: torch.Tensor, logits_t: torch.Tensor, w_s: torch.Tensor | None = None,
                w_t: torch.Tensor | None = None) -> AdversarialLoss:
    loss_s = F.binary_cross_entropy_with_logits(logits_s, torch.ones_like(logits_s), weight=w_s)
    loss_t = F.binary_cross_entropy_with_logits(logits_t, torch.zeros_like(logits_t), weight=w_t)
    with torch.no_grad():
        acc = float(torch.cat([(logits_s > 0).float(), (logits_t <= 0).float()]).mean())
    return AdversarialLoss(0.5 * (loss_s + loss_t), acc)


class DomainAdversarialLoss(nn.Module):
    """DANN: the discriminator learns to tell source from target features; through the reversal layer the
    feature extractor learns to fool it. ``DomainAdversarialLoss(disc)(f_s, f_t, progress)``."""

    def __init__(self, discriminator: nn.Module, alpha: float = 10.0) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.alpha = alpha

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, progress: float) -> AdversarialLoss:
        coeff = reversal_coefficient(progress, self.alpha)
        logits = self.discriminator(reverse_gradient(torch.cat([f_s, f_t]), coeff))
        return _domain_bce(logits[: len(f_s)], logits[len(f_s):])


def _per_domain_weights(probs: torch.Tensor) -> torch.Tensor:
    """CDAN+E weights ``1 + exp(-H(p))``, rescaled to mean 1 (so each domain keeps its total weight)."""
    w = 1.0 + torch.exp(-entropy(probs))
    return w / w.mean()


class ConditionalDomainAdversarialLoss(nn.Module):
    """CDAN: the discriminator sees the multilinear map ``f (x) softmax(g)`` (features conditioned on the
    predicted class). With ``entropy_conditioning`` (CDAN+E) confident examples weigh more. When
    ``D * C > max_dim`` a randomized multilinear map of width ``max_dim`` with fixed random matrices is used.
    Predictions are detached: the adversarial gradient reaches the features only."""

    def __init__(self, feature_dim: int, num_classes: int, hidden: int = 256, entropy_conditioning: bool = True,
                 max_dim: int = 4096, alpha: float = 10.0, seed: int = 0) -> None:
        super().__init__()
        self.entropy_conditioning = entropy_conditioning
        self.alpha = alpha
        full = feature_dim * num_classes
        self.randomized = full > max_dim
        out_dim = max_dim if self.randomized else full
        if self.randomized:
            g = torch.Generator().manual_seed(seed)
            self.register_buffer("rf", torch.randn(feature_dim, max_dim, generator=g))
            self.register_buffer("rg", torch.randn(num_classes, max_dim, generator=g))
        self.discriminator = DomainDiscriminator(out_dim, hidden)

    def multilinear(self, f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self.randomized:
            return (f @ self.rf) * (p @ self.rg) / math.sqrt(self.rf.shape[1])
        return torch.bmm(p.unsqueeze(2), f.unsqueeze(1)).flatten(1)

    def forward(self, f_s: torch.Tensor, logits_s: torch.Tensor, f_t: torch.Tensor, logits_t: torch.Tensor,
                progress: float) -> AdversarialLoss:
        p_s, p_t = torch.softmax(logits_s.detach(), 1), torch.softmax(logits_t.detach(), 1)
        h = torch.cat([self.multilinear(f_s, p_s), self.multilinear(f_t, p_t)])
        logits = self.discriminator(reverse_gradient(h, reversal_coefficient(progress, self.alpha)))
        w_s = w_t = None
        if self.entropy_conditioning:
            w_s, w_t = _per_domain_weights(p_s), _per_domain_weights(p_t)
        return _domain_bce(logits[: len(f_s)], logits[len(f_s):], w_s, w_t)
