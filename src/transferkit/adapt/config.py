"""AdaptConfig: everything an ``adapt`` run needs; saved as ``adapt.yaml`` in the run (reproduces it)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar


from ..config import TrainConfig, YamlConfig, setting
from ..errors import ConfigError, bad_param, suggest

FEATURE_MODES = ("end-to-end", "frozen")

ADAPT_TRAINING = TrainConfig(epochs=3, lr=1e-3, weight_decay=5e-4, grad_clip=10.0)  # the adaptation recipe's defaults


@dataclass
class AdaptConfig(YamlConfig):
    """Unsupervised domain adaptation: labelled source, unlabelled target."""

    # the training settings adaptation uses (the rest of TrainConfig does not apply to its schedule)
    TRAINING_FLAGS: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "lr", "weight_decay", "grad_clip",
                                                 "checkpoint_every")

    method: str = setting("dann", "adaptation method(s), '+'-combined, e.g. dann, cdan, coral, mmd, mcc, "
                                  "self-training, adabn, source-only, dann+mcc")
    backbone: str | None = setting(None, "backbone spec, e.g. scratch:cnn, packaged:minilm-l6 (or use --run)")
    run: str | None = setting(None, "start from the backbone of an earlier run (parameter transfer)")
    seed: int = setting(0, "seed of the split, initialisation and batch order")
    # data
    source: str | None = setting(None, "labelled source data: image folder or CSV/JSONL/Parquet table")
    target: str | None = setting(None, "unlabelled target data (labels, if present, are ignored)")
    target_test: str | None = setting(None, "labelled target test data, for reporting only (never used to train "
                                            "or select)")
    text_column: str | None = setting(None, "text column(s) of a table, comma-separated columns are joined")
    image_column: str | None = setting(None, "image-path column of a table")
    label_column: str = setting("label", "label column of a table")
    id_column: str | None = setting(None, "id column of a table")
    val_fraction: float = setting(0.1, "fraction of the source held out for source validation")
    image_size: int | None = setting(None, "input size in pixels (default: the backbone's)")
    max_length: int | None = setting(None, "text: tokens per example (default: the backbone's)")
    features: str = setting("end-to-end", "end-to-end (adapt the backbone) or frozen (cached backbone features + "
                                          "trainable MLP bottleneck)")
    bottleneck_dim: int = setting(256, "frozen mode: width of the trainable MLP bottleneck")
    # training
    training: TrainConfig = setting(factory=lambda: dataclasses.replace(ADAPT_TRAINING),
                                    help="training settings (epochs, batch size, lr, weight decay, clipping)")
    trade_off: float = setting(1.0, "weight of the adaptation loss(es) added to the source cross-entropy")
    trade_offs: list[float] = setting(factory=list, help="comma-separated trade-off grid, chosen by the "
                                                         "unsupervised --select criterion")
    threshold: float = setting(0.9, "self-training: minimum confidence of a pseudo-label")
    class_balanced: bool = setting(True, "self-training: cap and weight pseudo-labels per class")
    mcc_temperature: float = setting(2.5, "MCC: softmax temperature")
    # selection and report
    select: str = setting("dev", "unsupervised checkpoint / trade-off criterion: dev | source-val | entropy | last")
    checkpoints: int = setting(3, "evenly spaced checkpoints per training run that compete in selection")
    plot_points: int = setting(500, "points per domain in the t-SNE plots and the A-distance (0: no plots)")
    # engineering
    num_threads: int | None = setting(None, "torch threads (default: all cores)")
    runs_dir: str = setting("runs", "folder of the runs")
    name: str | None = setting(None, "run name (default: adapt-METHOD-time)")
    overwrite: bool = setting(False, "replace an existing run of this name")

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
        if not isinstance(self.training, TrainConfig):
            raise bad_param("AdaptConfig", "training", "a TrainConfig", self.training)
        self.training.validate("AdaptConfig")
        if self.training.batch_size < 2:
            raise bad_param("AdaptConfig", "batch_size", "an integer >= 2", self.training.batch_size)
        for name, lo in (("checkpoints", 1), ("bottleneck_dim", 2), ("plot_points", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad_param("AdaptConfig", name, f"an integer >= {lo}", v)
        for name in ("mcc_temperature",):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v <= 0:
                raise bad_param("AdaptConfig", name, "a float in (0, inf)", v)
        for name in ("trade_off",):
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

