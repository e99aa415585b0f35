"""Metrics: classification (accuracy, macro/weighted P/R/F1, per-class, ECE) and regression (MAE, RMSE, R^2)."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (accuracy_score, confusion_matrix, mean_absolute_error, mean_squared_error,
                             precision_recall_fscore_support, r2_score)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., 2017)."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def classification_metrics(y: np.ndarray, probs: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    labels = np.arange(len(classes))
    pred = probs.argmax(1)
    out: dict[str, Any] = {"n": int(len(y)), "accuracy": float(accuracy_score(y, pred))}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        out[f"{avg}_precision"], out[f"{avg}_recall"], out[f"{avg}_f1"] = float(p), float(r), float(f)
    p, r, f, sup = precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
    out["per_class"] = {str(c): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                 "support": int(sup[i])} for i, c in enumerate(classes)}
    out["ece"] = expected_calibration_error(probs, y)
    out["confusion_matrix"] = confusion_matrix(y, pred, labels=labels).tolist()
    return out


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    return {"n": int(len(y)), "mae": float(mean_absolute_error(y, pred)),
            "rmse": float(np.sqrt(mean_squared_error(y, pred))), "r2": float(r2_score(y, pred))}


def headline(metrics: dict[str, Any], task: str) -> tuple[str, float]:
    """The one number a table shows: macro-F1 for classification, R^2 for regression."""
    return ("r2", metrics["r2"]) if task == "regression" else ("macro_f1", metrics["macro_f1"])
