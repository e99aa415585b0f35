"""The METHODS registry: each adaptation method is a small component adding one loss to the source
cross-entropy (``loss = CE + trade_off * sum(component losses)``); ``a+b`` combines components."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .adversarial import ConditionalDomainAdversarialLoss, DomainAdversarialLoss, DomainDiscriminator
from .coral import coral_loss
from .mcc import mcc_loss
from .mmd import mk_mmd
from .self_training import PseudoLabelLoss, select_pseudo_labels


@dataclass
class Step:
    """What a component sees at one training step."""

    f_s: torch.Tensor
    logits_s: torch.Tensor
    f_t: torch.Tensor
    logits_t: torch.Tensor
    target_index: np.ndarray  # positions of this target batch in the target set
    progress: float  # 0 at the first step, 1 at the end of training


@dataclass(frozen=True)
class MethodContext:
    feature_dim: int
    num_classes: int
    threshold: float = 0.9
    class_balanced: bool = True
    mcc_temperature: float = 2.5
    seed: int = 0


class Component(nn.Module):
    """One adaptation loss. ``post_hoc`` components change the trained model instead (AdaBN)."""

    name = ""
    post_hoc = False

    def loss(self, s: Step) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def refresh(self, target_probs: np.ndarray) -> dict[str, float]:
        """Called between steps with the current model's target probabilities (self-training)."""
        return {}

    @property
    def wants_refresh(self) -> bool:
        return False

    def extra_state(self) -> dict[str, Any]:
        """Non-tensor state that a training checkpoint must keep (JSON)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


class CoralComponent(Component):
    name = "coral"

    def loss(self, s: Step) -> tuple[torch.Tensor, dict[str, float]]:
        v = coral_loss(s.f_s, s.f_t)
        return v, {"coral": v.item()}


class MMDComponent(Component):
    name = "mmd"

    def loss(self, s: Step) -> tuple[torch.Tensor, dict[str, float]]:
        v = mk_mmd(s.f_s, s.f_t)
        return v, {"mmd": v.item()}


class DANNComponent(Component):
    name = "dann"

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__()
        self.adv = DomainAdversarialLoss(DomainDiscriminator(ctx.feature_dim))

    def loss(self, s: Step) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.adv(s.f_s, s.f_t, s.progress)
        return out.loss, {"domain_loss": out.loss.item(), "domain_acc": out.domain_accuracy}


class CDANComponent(Component):
    name = "cdan"

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__()
        self.adv = ConditionalDomainAdversarialLoss(ctx.feature_dim, ctx.num_classes, seed=ctx.seed)

    def loss(self, s: Step) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.adv(s.f_s, s.logits_s, s.f_t, s.logits_t, s.progress)
        return out.loss, {"domain_loss": out.loss.item(), "domain_acc": out.domain_accuracy}


class MCCComponent(Component):
    name = "mcc"

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__()
        self.temperature = ctx.mcc_temperature

    def loss(self, s: Step) -> tuple[torch.Tensor, dict[str, float]]:
        v = mcc_loss(s.logits_t, self.temperature)
        return v, {"mcc": v.item()}


class SelfTrainingComponent(Component):
    """Pseudo-labels are refreshed by the trainer (after a source-only warm-up), never inside ``loss``."""

    name = "self-training"

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__()
        self.threshold, self.class_balanced = ctx.threshold, ctx.class_balanced
        self.ce = PseudoLabelLoss()
        self.pseudo: torch.Tensor | None = None
        self.weights = torch.ones(ctx.num_classes)

    @property
    def wants_refresh(self) -> bool:
        return True

    def refresh(self, target_probs: np.ndarray) -> dict[str, float]:
        pl = select_pseudo_labels(target_probs, self.threshold, self.class_balanced)
        pseudo = torch.full((len(target_probs),), -1, dtype=torch.long)
        pseudo[torch.as_tensor(pl.index)] = torch.as_tensor(pl.labels)
        self.pseudo, self.weights = pseudo, torch.as_tensor(pl.class_weights, dtype=torch.float32)
        return {"pseudo_labelled": len(pl.index) / max(len(target_probs), 1)}

    def extra_state(self) -> dict[str, Any]:
        return {"pseudo": None if self.pseudo is None else self.pseudo.tolist(), "weights": self.weights.tolist()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pseudo = None if state["pseudo"] is None else torch.as_tensor(state["pseudo"], dtype=torch.long)
        self.weights = torch.as_tensor(state["weights"], dtype=torch.float32)

    def loss(self, s: Step) -> tuple[torch.Tensor, dict[str, float]]:
        if self.pseudo is None:
            return s.logits_t.sum() * 0.0, {"pseudo_loss": 0.0}
        v = self.ce(s.logits_t, self.pseudo[torch.as_tensor(s.target_index)], self.weights)
        return v, {"pseudo_loss": v.item()}


class AdaBNComponent(Component):
    """Marker: the trainer re-estimates BatchNorm statistics on target data at every checkpoint."""

    name = "adabn"
    post_hoc = True


METHODS: Registry[Callable[[MethodContext], Component | None]] = Registry(
    "adaptation method", " Combine with '+', e.g. dann+mcc. See `transferkit adapt --help`.")

METHODS.register("source-only", "no adaptation: source cross-entropy only (the baseline)")(lambda ctx: None)
METHODS.register("adabn", "re-estimate BatchNorm statistics on target data (Li et al. 2017)")(
    lambda ctx: AdaBNComponent())
METHODS.register("coral", "Deep CORAL: align feature means and covariances (Sun & Saenko 2016)")(
    lambda ctx: CoralComponent())
METHODS.register("mmd", "DAN: multi-kernel MMD between feature distributions (Long et al. 2015)")(
    lambda ctx: MMDComponent())
METHODS.register("dann", "gradient reversal + domain discriminator (Ganin et al. 2016)")(DANNComponent)
METHODS.register("cdan", "conditional adversarial with entropy conditioning (Long et al. 2018)")(CDANComponent)
METHODS.register("mcc", "minimum class confusion on target predictions (Jin et al. 2020)")(MCCComponent)
METHODS.register("self-training", "confidence-thresholded, class-balanced pseudo-labels (Zou et al. 2018)")(
    SelfTrainingComponent)


def parse_method(method: str) -> list[str]:
    """'dann+mcc' -> ['dann', 'mcc'], with checks that the combination makes sense."""
    if not isinstance(method, str) or not method.strip():
        raise ConfigError(f"The 'method' parameter must name a method such as 'dann'. Got {method!r} instead. "
                          f"Methods: {', '.join(METHODS.names())}.")
    parts = [p.strip() for p in method.split("+")]
    for p in parts:
        METHODS.get(p)
    if len(set(parts)) != len(parts):
        raise ConfigError(f"Method '{method}' names a component twice.")
    if "source-only" in parts and len(parts) > 1:
        raise ConfigError(f"Method '{method}': 'source-only' is the baseline and combines with nothing "
                          "(it is always reported next to the adapted model).")
    if {"dann", "cdan"} <= set(parts):
        raise ConfigError(f"Method '{method}' combines two domain discriminators; pick dann or cdan.")
    return parts


def build_components(method: str, ctx: MethodContext) -> list[Component]:
    out = [METHODS.get(p)(ctx) for p in parse_method(method)]
    return [c for c in out if c is not None]
