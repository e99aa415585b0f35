"""Unsupervised domain adaptation: labelled source, unlabelled target (``transferkit adapt``).

One small module per method (coral, mmd, adversarial: DANN / CDAN, mcc, self_training, adabn), composed
through the METHODS registry; ``trainer`` is the loop, ``selection`` the label-free model selection,
``a_distance`` the proxy A-distance, ``report`` the run directory.
"""
from .a_distance import proxy_a_distance
from .adabn import adapt_batchnorm
from .adversarial import (ConditionalDomainAdversarialLoss, DomainAdversarialLoss, DomainDiscriminator,
                          reversal_coefficient, reverse_gradient)
from .api import AdaptResult, Baseline, adapt
from .config import AdaptConfig
from .coral import CorrelationAlignmentLoss, coral_loss
from .mcc import MinimumClassConfusionLoss, mcc_loss
from .methods import METHODS, parse_method
from .mmd import MultipleKernelMMD, mk_mmd
from .self_training import PseudoLabelLoss, select_pseudo_labels
from .selection import CRITERIA, dev_risk

__all__ = ["AdaptConfig", "AdaptResult", "Baseline", "CRITERIA", "METHODS", "ConditionalDomainAdversarialLoss",
           "CorrelationAlignmentLoss", "DomainAdversarialLoss", "DomainDiscriminator", "MinimumClassConfusionLoss",
           "MultipleKernelMMD", "PseudoLabelLoss", "adapt", "adapt_batchnorm", "coral_loss", "dev_risk",
           "mcc_loss", "mk_mmd", "parse_method", "proxy_a_distance", "reversal_coefficient", "reverse_gradient",
           "select_pseudo_labels"]
