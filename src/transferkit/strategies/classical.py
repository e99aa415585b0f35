"""Classical, non-transfer baselines on the same data and splits: TF-IDF (word 1-2 grams) + logistic
regression for text; raw pixels (resized, standardised) + logistic regression for images. Ridge for regression."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from ..backbones.base import ImagePreprocessor
from ..data.dataset import Dataset
from ..data.images import ImageStore
from ..engine.loop import validation_score

GRID = [0.01, 0.1, 1.0, 10.0, 100.0]


def pixel_size(ds: Dataset, cap: int = 32) -> int:
    if ds.is_array_images:
        return int(min(cap, max(ds.inputs.shape[1], ds.inputs.shape[2])))
    return cap


@dataclass
class ClassicalModel:
    """A fitted featuriser + linear model; ``outputs(ds)`` gives logits (or the standardised target)."""

    modality: str
    task: str
    size: int | None = None
    vectorizer: Any = None
    scaler: Any = None
    model: Any = None
    n_out: int = 1
    details: dict[str, Any] = field(default_factory=dict)

    def featurise(self, ds: Dataset, fit: bool = False):
        if self.modality == "text":
            if fit:
                self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
                return self.vectorizer.fit_transform(ds.inputs)
            return self.vectorizer.transform(ds.inputs)
        pre = ImagePreprocessor(self.size, (0.0,) * 3, (1.0,) * 3, "bilinear")
        store = ImageStore(ds, pre)
        x = store.batch(np.arange(len(ds))).float().numpy().reshape(len(ds), -1) / 255.0
        if fit:
            self.scaler = StandardScaler().fit(x)
        return self.scaler.transform(x)

    def outputs(self, ds: Dataset) -> np.ndarray:
        return linear_outputs(self.model, self.featurise(ds), self.task, self.n_out)


def linear_outputs(model: Any, x: Any, task: str, n_out: int) -> np.ndarray:
    """A fitted scikit-learn linear model's outputs as logits over all ``n_out`` classes (classes absent from
    training get -1e4), or the regression prediction as one column."""
    if task == "regression":
        return model.predict(x).reshape(-1, 1)
    logits = np.full((x.shape[0], n_out), -1e4)
    dec = model.decision_function(x)
    cls = model.classes_.astype(int)
    if dec.ndim == 1:
        logits[:, cls[0]], logits[:, cls[1]] = 0.0, dec
    else:
        logits[:, cls] = dec
    return logits


def fit_classical(train: Dataset, y_train: np.ndarray, val: Dataset, y_val: np.ndarray, task: str, n_out: int,
                  seed: int = 0, grid: list[float] | None = None) -> ClassicalModel:
    """Fit on train, choose the regularisation on validation (same protocol as the linear probe)."""
    m = ClassicalModel(train.modality, task, pixel_size(train) if train.modality == "image" else None, n_out=n_out)
    xtr = m.featurise(train, fit=True)
    xva = m.featurise(val)
    best = None
    scores = {}
    for C in grid or GRID:
        if task == "regression":
            est = Ridge(alpha=1.0 / C).fit(xtr, y_train)
            out = est.predict(xva).reshape(-1, 1)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(xtr, y_train)
            m.model = est
            out = m.outputs(val)
        s = validation_score(out, y_val, task)
        scores[f"{C:g}"] = s
        if best is None or s > best[0]:
            best = (s, C, est)
    m.model = best[2]
    m.details = {"chosen_C": best[1], "val_scores": scores,
                 "features": "tfidf word 1-2 grams" if m.modality == "text" else f"pixels {m.size}x{m.size}"}
    return m
