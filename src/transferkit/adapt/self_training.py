"""Self-training with confidence-thresholded, class-balanced pseudo-labels.

Lee, "Pseudo-Label", ICML-W 2013; Zou et al., "Unsupervised Domain Adaptation for Semantic Segmentation via
Class-Balanced Self-Training", ECCV 2018 (class balance, so easy classes do not take over the pseudo-labels).

Selection: keep target examples whose top probability is >= ``threshold``; with class balance, each class
keeps at most ``ceil(N / C)`` of its most confident examples (its share under a uniform class prior), and the
pseudo-label loss weights each class inversely to its number of pseudo-labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PseudoLabels:
    index: np.ndarray  # positions in the target set that received a pseudo-label
    labels: np.ndarray  # the pseudo-label of each selected example
    confidence: np.ndarray
    class_weights: np.ndarray  # [C], mean 1 over the classes present; 0 for classes without pseudo-labels

    def counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


def select_pseudo_labels(probs: np.ndarray, threshold: float = 0.9, class_balanced: bool = True) -> PseudoLabels:
    """Pseudo-labels from target probabilities [N, C]."""
    n, c = probs.shape
    conf, pred = probs.max(1), probs.argmax(1)
    keep: list[np.ndarray] = []
    cap = math.ceil(n / c) if class_balanced else n
    for k in range(c):
        idx = np.flatnonzero((pred == k) & (conf >= threshold))
        keep.append(idx[np.argsort(-conf[idx], kind="stable")][:cap])
    index = np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64)
    labels = pred[index]
    counts = np.bincount(labels, minlength=c).astype(np.float64)
    weights = np.zeros(c)
    present = counts > 0
    if class_balanced and present.any():
        weights[present] = 1.0 / counts[present]
        weights[present] /= weights[present].mean()
    else:
        weights[present] = 1.0
    return PseudoLabels(index.astype(np.int64), labels.astype(np.int64), conf[index], weights)


class PseudoLabelLoss(nn.Module):
    """Class-weighted cross-entropy on the pseudo-labelled part of a target batch (``label = -1``: none).
    Returns 0 (with a gradient path) when the batch holds no pseudo-labels."""

    def forward(self, logits_t: torch.Tensor, pseudo: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        mask = pseudo >= 0
        if not bool(mask.any()):
            return logits_t.sum() * 0.0
        w = class_weights[pseudo[mask]]
        ce = F.cross_entropy(logits_t[mask], pseudo[mask], reduction="none")
        return (ce * w).sum() / w.sum().clamp_min(1e-12)
