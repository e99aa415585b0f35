"""Continued self-supervised pretraining of a text encoder on unlabelled text (masked language modelling); the
result is a run whose encoder is a backbone: ``transferkit fit --backbone run:runs/NAME``."""
from .api import PretrainResult, pretrain
from .config import PretrainConfig

__all__ = ["PretrainConfig", "PretrainResult", "pretrain"]
