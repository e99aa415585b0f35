"""What a strategy receives and returns."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backbones.base import Backbone
from ..backbones.recipes import resolve_training
from ..config import FitConfig, TrainConfig
from ..engine.loop import CheckpointSpec, History, TaskSpec, train_model
from ..engine.model import TransferModel
from ..features.cache import FeatureCache
from ..features.inputs import Inputs


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
    checkpoint: CheckpointSpec | None = None  # where training keeps crash-safe checkpoints (None: none)

    @property
    def task(self) -> str:
        return self.config.task

    def training(self, **overrides: Any) -> TrainConfig:
        """The run's training settings, settings left unset filled by the backbone family's defaults
        (:mod:`transferkit.backbones.recipes`), then ``overrides`` (e.g. LP-FT's lower learning rate)."""
        return dataclasses.replace(resolve_training(self.config.training, self.backbone.meta, self.config.strategy),
                                   **overrides)

    def task_spec(self) -> TaskSpec:
        return TaskSpec(self.config.task, self.config.loss, self.class_weights)

    def fit_model(self, model: TransferModel, settings: TrainConfig | None = None, **kw: Any) -> History:
        """Train ``model`` with the engine's supervised recipe on this context's data, checkpoints and logs."""
        return train_model(model, self.train, self.y_train, self.val, self.y_val, settings or self.training(),
                           self.task_spec(), seed=self.config.seed, log_dir=self.log_dir, progress=self.progress,
                           checkpoint=self.checkpoint, **kw)


@dataclass
class StrategyResult:
    model: TransferModel
    history: History | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # Head outputs already computed from cached features ({"val": ..., "test": ...}); spares a forward pass.
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    # Extra files of the run: name in the run folder -> writer(path) (LoRA's unmerged adapter)
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)
