"""What a strategy receives and returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backbones.base import Backbone
from ..config import FitConfig
from ..engine.inputs import Inputs
from ..engine.loop import History, TrainSettings
from ..engine.model import TransferModel
from .feature_cache import FeatureCache


@dataclass
class FitContext:
    config: FitConfig
    backbone: Backbone
    train: Inputs
    y_train: np.ndarray  # class indices, or the standardised regression target
    val: Inputs
    y_val: np.ndarray
    n_out: int
    class_weights: np.ndarray | None = None
    log_dir: Path | None = None
    cache: FeatureCache = field(default_factory=FeatureCache)
    progress: bool = True
    test: Inputs | None = None

    @property
    def task(self) -> str:
        return self.config.task

    def train_settings(self, **overrides: Any) -> TrainSettings:
        c = self.config
        s = TrainSettings(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay,
                          layer_decay=c.layer_decay, freeze=c.freeze, warmup=c.warmup, grad_clip=c.grad_clip,
                          accumulate=c.accumulate, patience=c.patience, min_steps=c.min_steps,
                          label_smoothing=c.label_smoothing,
                          class_weights=self.class_weights, task=c.task, loss=c.loss, seed=c.seed,
                          precision=c.precision)
        for k, v in overrides.items():
            setattr(s, k, v)
        return s


@dataclass
class StrategyResult:
    model: TransferModel
    history: History | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # Head outputs already computed from cached features ({"val": ..., "test": ...}); spares a forward pass.
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
