"""Knowledge-distillation losses, pure functions of logits, labels and features.

Soft targets: Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network", arXiv:1503.02531.
The KL term is multiplied by ``T**2`` so that its gradients keep their size when the temperature changes (§2).
Feature matching through a learned projection: Romero et al. (2015), "FitNets: Hints for Thin Deep Nets",
arXiv:1412.6550 (on pooled features, as timm's ``FeatureDistillationTask``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

UNLABELLED = -1  # the hard label of a transfer-set row that has none (it gets soft targets only)


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(teacher / T) || softmax(student / T)) * T**2``, averaged over rows."""
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the labelled rows (``labels >= 0``); exactly 0 for a batch of unlabelled rows only."""
    keep = labels >= 0
    if bool(keep.all()):
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    if not bool(keep.any()):
        return logits.float().sum() * 0.0
    return F.cross_entropy(logits[keep].float(), labels[keep], label_smoothing=label_smoothing)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float, label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """``{"loss": alpha * CE(labels) + (1 - alpha) * KL_T * T**2, "hard": CE, "soft": KL_T * T**2}``.

    ``alpha = 1`` is the plain cross-entropy, ``alpha = 0`` soft targets only.
    """
    hard = hard_label_loss(student_logits, labels, label_smoothing)
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    return {"loss": alpha * hard + (1.0 - alpha) * soft, "hard": hard, "soft": soft}


def feature_matching_loss(projected: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the projected student features and the teacher's, [B, D] each."""
    return F.mse_loss(projected.float(), teacher_features.float())


__all__ = ["UNLABELLED", "distillation_loss", "feature_matching_loss", "hard_label_loss", "soft_target_loss"]
