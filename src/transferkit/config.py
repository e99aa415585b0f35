"""Typed configuration: one dataclass that round-trips to YAML and reproduces a run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, bad_param, suggest


class Task(str, Enum):
    classification = "classification"
    regression = "regression"


class YamlConfig:
    """YAML / dict round-trip for config dataclasses, with a clear error for unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> Any:
        names = {f.name for f in fields(cls)}
        unknown = [k for k in d if k.replace("-", "_") not in names]
        if unknown:
            k = unknown[0]
            raise ConfigError(f"Unknown key '{k}' in {where}.{suggest(k.replace('-', '_'), names)} "
                              f"Known keys: {', '.join(sorted(names))}.")
        return cls(**{k.replace("-", "_"): v for k, v in d.items()})

    @classmethod
    def from_yaml(cls, path: str | Path) -> Any:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"Config file '{p}' does not exist.")
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"Config file '{p}' is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"Config file '{p}' must hold a mapping of key: value.")
        return cls.from_dict(d, where=str(p))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


@dataclass
class FitConfig(YamlConfig):
    """Everything a fit needs; saved as ``config.yaml`` in every run."""

    # what to transfer and how
    backbone: str = "packaged:efficientnet_lite0"
    strategy: str = "linear-probe"
    task: str = "classification"
    seed: int = 0
    # data
    train: str | None = None
    val: str | None = None
    test: str | None = None
    text_column: str | None = None
    image_column: str | None = None
    label_column: str = "label"
    id_column: str | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    strict: bool = False
    # preprocessing
    image_size: int | None = None
    max_length: int | None = None
    # training (fine-tune, lp-ft)
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    layer_decay: float = 0.85
    freeze: int = 0
    warmup: float = 0.1
    grad_clip: float = 1.0
    accumulate: int = 1
    patience: int = 3
    min_steps: int = 100
    class_weights: bool = False
    label_smoothing: float = 0.0
    loss: str = "mse"
    head: str = "linear"
    # linear probe
    probe_grid: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    # choosing what to transfer: comma-separated backbone specs ranked when backbone="auto"
    candidates: str | None = None
    # engineering
    num_threads: int | None = None
    engine: str = "eager"  # feature-extraction engine: eager | compiled | onnx | onnx-int8
    precision: str = "fp32"  # training arithmetic: fp32 | bf16 (autocast; fast on CPUs with native bf16)
    # where the run goes
    runs_dir: str = "runs"
    name: str | None = None
    overwrite: bool = False

    def validate(self) -> FitConfig:
        from .backbones import parse_spec
        from .strategies import STRATEGIES

        if self.task not in {t.value for t in Task}:
            raise bad_param("FitConfig", "task", "'classification' or 'regression'", self.task)
        STRATEGIES.get(self.strategy)
        if self.backbone == "auto":  # chosen by transferability ranking among the candidates (transferkit.ranking)
            for spec in (self.candidates or "").split(","):
                if spec.strip():
                    parse_spec(spec.strip())
        else:
            parse_spec(self.backbone)
        if "auto" in (self.backbone, self.strategy) and self.task != "classification":
            raise ConfigError(f"backbone/strategy 'auto' ranks candidates for classification; task {self.task!r} "
                              "needs an explicit --backbone and --strategy.")
        for name, lo in (("epochs", 1), ("batch_size", 1), ("accumulate", 1), ("patience", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad_param("FitConfig", name, f"an integer >= {lo}", v)
        if not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise bad_param("FitConfig", "min_steps", "an integer >= 0", self.min_steps)
        if not isinstance(self.freeze, int) or self.freeze < 0:
            raise bad_param("FitConfig", "freeze", "an integer >= 0", self.freeze)
        for name in ("lr", "layer_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v <= 0:
                raise bad_param("FitConfig", name, "a float in (0, inf)", v)
        for name in ("val_fraction", "test_fraction", "warmup", "label_smoothing"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise bad_param("FitConfig", name, "a float in [0, 1)", v)
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise bad_param("FitConfig", "weight_decay/grad_clip", "a float >= 0", (self.weight_decay, self.grad_clip))
        if self.loss not in ("mse", "huber"):
            raise bad_param("FitConfig", "loss", "'mse' or 'huber'", self.loss)
        if self.precision not in ("fp32", "bf16"):
            raise bad_param("FitConfig", "precision", "'fp32' or 'bf16'", self.precision)
        from .engine.runtimes import ENGINES

        if self.engine not in ENGINES.names():
            raise bad_param("FitConfig", "engine", " | ".join(ENGINES.names()), self.engine)
        if self.head not in ("linear", "mlp"):
            raise bad_param("FitConfig", "head", "'linear' or 'mlp'", self.head)
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 8):
            raise bad_param("FitConfig", "image_size", "an integer >= 8", self.image_size)
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 2):
            raise bad_param("FitConfig", "max_length", "an integer >= 2", self.max_length)
        return self

