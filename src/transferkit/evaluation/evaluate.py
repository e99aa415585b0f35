"""Metrics of a fitted model (or of precomputed head outputs) on encoded targets: the one evaluation that
``fit``, ``transferkit evaluate``, the estimators and the study share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.loop import predict_outputs
from ..engine.model import TransferModel
from ..features.inputs import Inputs
from .metrics import classification_metrics, regression_metrics, softmax


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    outputs: np.ndarray
    y_true: np.ndarray


def evaluate_model(model: TransferModel, inputs: Inputs, y_enc: np.ndarray, labels: dict[str, Any],
                   batch_size: int = 64, outputs: np.ndarray | None = None) -> Evaluation:
    """Metrics of ``model`` on ``inputs`` (or of precomputed head ``outputs`` for the same inputs)."""
    out = predict_outputs(model, inputs, batch_size) if outputs is None else outputs
    if labels["task"] == "regression":
        pred = out[:, 0] * labels["target_std"] + labels["target_mean"]
        y = y_enc * labels["target_std"] + labels["target_mean"]
        return Evaluation(regression_metrics(y, pred), pred, y)
    return Evaluation(classification_metrics(y_enc, softmax(out), labels["classes"]), softmax(out), y_enc)


__all__ = ["Evaluation", "evaluate_model"]
