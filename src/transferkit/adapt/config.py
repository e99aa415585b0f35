"""AdaptConfig: everything an ``adapt`` run needs; saved as ``adapt.yaml`` in the run (reproduces it)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..config import YamlConfig
from ..errors import ConfigError, bad_param, suggest

FEATURE_MODES = ("end-to-end", "frozen")

HELP = {
    "method": "adaptation method(s), '+'-combined, e.g. dann, cdan, coral, mmd, mcc, self-training, adabn, "
              "source-only, dann+mcc",
    "backbone": "backbone spec, e.g. scratch:cnn, packaged:minilm-l6 (or use --run)",
    "run": "start from the backbone of an earlier run (parameter transfer)",
    "source": "labelled source data: image folder or CSV/JSONL/Parquet table",
    "target": "unlabelled target data (labels, if present, are ignored)",
    "target_test": "labelled target test data, for reporting only (never used to train or select)",
    "features": "end-to-end (adapt the backbone) or frozen (cached backbone features + trainable MLP bottleneck)",
    "trade_off": "weight of the adaptation loss(es) added to the source cross-entropy",
    "trade_offs": "comma-separated trade-off grid, chosen by the unsupervised --select criterion",
    "select": "unsupervised checkpoint / trade-off criterion: dev | source-val | entropy | last",
    "checkpoints": "evenly spaced checkpoints per training run that compete in selection",
    "val_fraction": "fraction of the source held out for source validation",
    "threshold": "self-training: minimum confidence of a pseudo-label",
    "class_balanced": "self-training: cap and weight pseudo-labels per class",
    "mcc_temperature": "MCC: softmax temperature",
    "bottleneck_dim": "frozen mode: width of the trainable MLP bottleneck",
    "plot_points": "points per domain in the t-SNE plots and the A-distance (0: no plots)",
}


@dataclass
class AdaptConfig(YamlConfig):
    """Unsupervised domain adaptation: labelled source, unlabelled target."""

    method: str = "dann"
    backbone: str | None = None
    run: str | None = None
    seed: int = 0
    # data
    source: str | None = None
    target: str | None = None
    target_test: str | None = None
    text_column: str | None = None
    image_column: str | None = None
    label_column: str = "label"
    id_column: str | None = None
    val_fraction: float = 0.1
    image_size: int | None = None
    max_length: int | None = None
    features: str = "end-to-end"
    bottleneck_dim: int = 256
    # training
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    trade_off: float = 1.0
    trade_offs: list[float] = field(default_factory=list)
    threshold: float = 0.9
    class_balanced: bool = True
    mcc_temperature: float = 2.5
    # selection and report
    select: str = "dev"
    checkpoints: int = 3
    plot_points: int = 500
    # engineering
    num_threads: int | None = None
    runs_dir: str = "runs"
    name: str | None = None
    overwrite: bool = False

    @property
    def backbone_spec(self) -> str:
        return self.backbone if self.backbone else f"run:{self.run}"

    @property
    def grid(self) -> list[float]:
        return [float(v) for v in self.trade_offs] or [float(self.trade_off)]

    def validate(self) -> AdaptConfig:
        from ..backbones import parse_spec
        from .methods import parse_method
        from .selection import CRITERIA

        if (self.backbone is None) == (self.run is None):
            raise ConfigError("Give exactly one of --backbone SPEC or --run PATH "
                              f"(got backbone={self.backbone!r}, run={self.run!r}).")
        parse_spec(self.backbone_spec)
        parse_method(self.method)
        if self.features not in FEATURE_MODES:
            raise bad_param("AdaptConfig", "features", " or ".join(repr(m) for m in FEATURE_MODES), self.features)
        if self.select not in CRITERIA:
            raise ConfigError(f"Unknown selection criterion '{self.select}'.{suggest(self.select, CRITERIA)} "
                              f"Choose from: {', '.join(CRITERIA)}.")
        for name, lo in (("epochs", 1), ("batch_size", 2), ("checkpoints", 1), ("bottleneck_dim", 2),
                         ("plot_points", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad_param("AdaptConfig", name, f"an integer >= {lo}", v)
        for name in ("lr", "mcc_temperature"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v <= 0:
                raise bad_param("AdaptConfig", name, "a float in (0, inf)", v)
        for name in ("trade_off", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise bad_param("AdaptConfig", name, "a float >= 0", v)
        if any(not isinstance(v, (int, float)) or v < 0 for v in self.trade_offs):
            raise bad_param("AdaptConfig", "trade_offs", "a list of floats >= 0", self.trade_offs)
        if not 0 < self.val_fraction < 1:
            raise bad_param("AdaptConfig", "val_fraction", "a float in (0, 1)", self.val_fraction)
        if not 0 <= self.threshold < 1:
            raise bad_param("AdaptConfig", "threshold", "a float in [0, 1)", self.threshold)
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 8):
            raise bad_param("AdaptConfig", "image_size", "an integer >= 8", self.image_size)
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 2):
            raise bad_param("AdaptConfig", "max_length", "an integer >= 2", self.max_length)
        return self

