"""Training defaults that depend on the backbone family: what a training setting left unset (``None``) means.

One table, :data:`FAMILIES`; :func:`family` classifies a backbone from its metadata and :func:`resolve_training`
fills the unset settings. ``fit`` resolves them once the backbone is built and saves the resolved values, so a
run's ``config.yaml`` always holds the numbers it trained with.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ..config import TrainConfig
from .base import BackboneMeta


@dataclass(frozen=True)
class FamilyRecipe:
    """Defaults of one backbone family, with the evidence for them."""

    lr: float
    why: str


FAMILIES: dict[str, FamilyRecipe] = {
    "convnet": FamilyRecipe(1e-3, "pretrained CNNs (EfficientNet-Lite0 on digits / MNIST: the peers pairs in "
                                  "BENCHMARKS.md run at 1e-3, equal to the plain timm loop)"),
    "transformer": FamilyRecipe(2e-4, "pretrained transformer encoders (MiniLM on SpamAssassin: 2e-4 ties HF "
                                      "Trainer in the peers pair; 1e-3 is measured in the peers ablation)"),
    "scratch": FamilyRecipe(1e-3, "randomly initialised models (scratch:cnn, scratch:transformer)"),
}

# learning rate of a strategy relative to the family's fine-tuning rate, where it differs (unset: 1)
STRATEGY_LR_SCALE: dict[str, FamilyRecipe] = {
    "lora": FamilyRecipe(5.0, "adapters start at zero and train few weights: in benchmarks/bench_lora.py 5x the "
                              "family rate beat 1x on MiniLM / SpamAssassin and on Lite0 / digits (BENCHMARKS.md)"),
}

_TRANSFORMER_NAMES = re.compile(r"vit|deit|swin|beit|eva|dino|clip|siglip|bert|roberta|minilm|mpnet|electra|deberta",
                                re.IGNORECASE)


def family(meta: BackboneMeta) -> str:
    """'scratch' for random initialisation, 'transformer' for pretrained text encoders and vision transformers,
    else 'convnet'."""
    if not meta.pretrained or meta.source == "scratch":
        return "scratch"
    if meta.modality == "text" or _TRANSFORMER_NAMES.search(meta.spec or ""):
        return "transformer"
    return "convnet"


def resolve_training(training: TrainConfig, meta: BackboneMeta, strategy: str | None = None) -> TrainConfig:
    """``training`` with every unset (``None``) family-dependent setting filled for this backbone (and strategy:
    :data:`STRATEGY_LR_SCALE`)."""
    recipe = FAMILIES[family(meta)]
    if training.lr is None:
        scale = STRATEGY_LR_SCALE[strategy].lr if strategy in STRATEGY_LR_SCALE else 1.0
        training = dataclasses.replace(training, lr=recipe.lr * scale)
    return training
