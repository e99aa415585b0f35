"""PretrainConfig: everything a ``pretrain`` run needs; saved as ``pretrain.yaml`` in the run (reproduces it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import TrainConfig, YamlConfig, setting
from ..errors import ConfigError, bad_param, suggest

OBJECTIVES = ("mlm",)


def _training() -> TrainConfig:
    """The continued-pretraining recipe's defaults (BERT-style: small LR, short warm-up)."""
    return TrainConfig(batch_size=16, lr=5e-5, weight_decay=0.01, warmup=0.06, grad_clip=1.0, precision="fp32",
                       device="cpu", checkpoint_every=100)


@dataclass
class PretrainConfig(YamlConfig):
    """Continued self-supervised pretraining of a text encoder on unlabelled text."""

    # the training settings pretraining uses (epochs, layer decay, patience... do not apply: it runs for a budget)
    TRAINING_FLAGS: ClassVar[tuple[str, ...]] = ("batch_size", "lr", "weight_decay", "warmup", "grad_clip",
                                                 "precision", "device", "checkpoint_every")

    data: str | None = setting(None, "unlabelled text: a CSV/JSONL/Parquet table, a .txt file (one text per line) "
                                     "or a folder of .txt files (one text per file); a label column is ignored")
    backbone: str = setting("packaged:minilm-l6", "the Hugging Face text encoder to continue pretraining: "
                                                  "packaged:minilm-l6, hf:DIR or run:PATH")
    objective: str = setting("mlm", "self-supervised objective: mlm (masked language modelling)")
    text_column: str | None = setting(None, "text column(s) of a table, comma-separated columns are joined")
    seed: int = setting(0, "seed of the held-out slice, head initialisation, batch order and masks")
    max_length: int = setting(128, "tokens per text (longer texts are truncated)")
    mask_prob: float = setting(0.15, "fraction of the tokens masked and predicted (of those, 8 in 10 become "
                                     "[MASK], 1 in 10 a random token, 1 in 10 stay)")
    max_steps: int = setting(1000, "step budget: optimiser steps of the run")
    max_minutes: float | None = setting(None, "time budget in minutes of training: stop cleanly at the next step "
                                              "after it (the run is still written)")
    val_fraction: float = setting(0.05, "fraction of the texts held out for the masked-token accuracy")
    eval_every: int = setting(0, "steps between held-out evaluations (0: only before and after training)")
    training: TrainConfig = setting(factory=_training, help="training settings (batch size, lr, weight decay, "
                                                            "warm-up, clipping, precision, device, checkpoints)")
    # engineering
    num_threads: int | None = setting(None, "torch threads (default: all cores)")
    runs_dir: str = setting("runs", "folder of the runs")
    name: str | None = setting(None, "run name (default: pretrain-OBJECTIVE-time)")
    overwrite: bool = setting(False, "replace an existing run of this name")

    def validate(self) -> PretrainConfig:
        from ..backbones import parse_spec

        if self.objective not in OBJECTIVES:
            raise ConfigError(f"Unknown pretraining objective '{self.objective}'.{suggest(self.objective, OBJECTIVES)} "
                              f"Choose from: {', '.join(OBJECTIVES)}.")
        parse_spec(self.backbone)
        if not isinstance(self.training, TrainConfig):
            raise bad_param("PretrainConfig", "training", "a TrainConfig", self.training)
        self.training.validate("PretrainConfig")
        for name, lo in (("max_steps", 1), ("max_length", 4), ("eval_every", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad_param("PretrainConfig", name, f"an integer >= {lo}", v)
        if self.max_minutes is not None and (not isinstance(self.max_minutes, (int, float))
                                             or isinstance(self.max_minutes, bool) or self.max_minutes <= 0):
            raise bad_param("PretrainConfig", "max_minutes", "a number of minutes > 0", self.max_minutes)
        if not isinstance(self.mask_prob, (int, float)) or not 0 < self.mask_prob < 1:
            raise bad_param("PretrainConfig", "mask_prob", "a float in (0, 1)", self.mask_prob)
        if not isinstance(self.val_fraction, (int, float)) or not 0 < self.val_fraction < 0.5:
            raise bad_param("PretrainConfig", "val_fraction", "a float in (0, 0.5)", self.val_fraction)
        return self
