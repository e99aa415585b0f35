"""Classical, non-transfer baselines on the same data and splits: raw pixels (resized to at most 32 px,
standardised) + logistic regression for images; TF-IDF (word 1-2 grams) + logistic regression for text; ridge for
regression. The regularisation is chosen on validation (:func:`transferkit.baselines.linear.search_grid`).

A fitted baseline is an ordinary :class:`~transferkit.engine.model.TransferModel`: its backbone is the fitted
featuriser (``classical:pixels`` / ``classical:tfidf``), its ``nn.Linear`` head holds the linear model's
coefficients, so a run of it saves, loads, predicts and evaluates like any other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import StandardScaler

from ..backbones.base import Backbone
from ..data.dataset import Dataset
from ..engine.model import TransferModel
from ..errors import ConfigError
from ..registry import Registry
from .linear import GridChoice, search_grid
from .pixels import PixelFeaturiser, fit_pixel_scaler, pixel_matrix, pixel_size
from .tfidf import FEATURES as TFIDF_FEATURES
from .tfidf import TfidfFeaturiser, fitted_vectorizer

GRID = [0.01, 0.1, 1.0, 10.0, 100.0]
MAX_ITER = 2000
SOURCE = "classical"  # the backbone source prefix: classical:pixels, classical:tfidf

FEATURISERS: Registry[type[PixelFeaturiser] | type[TfidfFeaturiser]] = Registry(
    "classical featuriser", " Use classical:pixels (images) or classical:tfidf (text).")
FEATURISERS.register("pixels", "images: pixels resized to at most 32 px, standardised per pixel")(PixelFeaturiser)
FEATURISERS.register("tfidf", "text: TF-IDF of word 1-2 grams (sublinear tf, l2-normalised rows)")(TfidfFeaturiser)


def classical_spec(modality: str) -> str:
    """The backbone spec of the classical baseline for ``modality`` data ("classical:pixels" / "classical:tfidf")."""
    names = [n for n in FEATURISERS.names() if FEATURISERS.get(n).MODALITY == modality]
    if not names:
        raise ConfigError(f"The classical baseline has no featuriser for {modality} data.")
    return f"{SOURCE}:{names[0]}"


def create_classical(name: str, image_size: int | None = None, vocab_size: int | None = None,
                     **_: Any) -> Backbone:
    """An *unfitted* featuriser for the ``classical:`` backbone source; fitting (the ``classical`` strategy) or
    loading a run (``idf_`` / ``mean_`` tensors, vocabulary JSON) fills it in.

    Args:
        image_size: the pixel featuriser's side before fitting (a saved run's ``input_size``).
        vocab_size: the TF-IDF featuriser's vocabulary size before loading (a saved run's).
    """
    return FEATURISERS.get(name).unfitted(image_size=image_size, vocab_size=vocab_size)


@dataclass
class SklearnFeatures:
    """The scikit-learn side of a fitted featuriser (the fitting path): a pixel scaler or a TF-IDF vectoriser."""

    size: int | None = None
    scaler: StandardScaler | None = None
    vectorizer: TfidfVectorizer | None = None

    def transform(self, ds: Dataset) -> Any:
        """Sparse TF-IDF rows, or standardised pixels [N, D] (float32)."""
        if self.vectorizer is not None:
            return self.vectorizer.transform(ds.inputs)
        return self.scaler.transform(pixel_matrix(ds, self.size))


def fit_featuriser(featuriser: PixelFeaturiser | TfidfFeaturiser, train: Dataset) -> tuple[SklearnFeatures, Any]:
    """Fit ``featuriser`` on ``train`` in place; returns its scikit-learn twin and the training features."""
    if isinstance(featuriser, TfidfFeaturiser):
        vec = fitted_vectorizer(train.inputs)
        x = vec.transform(train.inputs)
        featuriser.set_vectorizer(vec)
        return SklearnFeatures(vectorizer=vec), x
    size = pixel_size(train)
    raw = pixel_matrix(train, size)
    scaler = fit_pixel_scaler(raw)
    featuriser.set_scaler(size, scaler)
    return SklearnFeatures(size, scaler), scaler.transform(raw)


@dataclass
class ClassicalFit:
    """A fitted classical baseline: the featuriser, the scikit-learn preprocessing it was fitted with, the
    validation-chosen linear model, and its report (``details``). ``outputs(ds)`` gives logits (or the standardised
    target) through scikit-learn; :meth:`to_model` the same model as a ``TransferModel``."""

    featuriser: PixelFeaturiser | TfidfFeaturiser
    task: str
    n_out: int
    choice: GridChoice
    sklearn: SklearnFeatures
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return self.featuriser.meta.modality

    @property
    def size(self) -> int | None:
        return self.featuriser.size if isinstance(self.featuriser, PixelFeaturiser) else None

    @property
    def model(self) -> Any:
        """The fitted scikit-learn estimator."""
        return self.choice.estimator

    @property
    def vectorizer(self) -> TfidfVectorizer | None:
        return self.sklearn.vectorizer

    def outputs(self, ds: Dataset) -> np.ndarray:
        """Logits (or the standardised target), computed by scikit-learn (float64)."""
        return self.choice.outputs(self.sklearn.transform(ds))

    def to_model(self) -> TransferModel:
        """``head(featuriser(x))`` with the linear model in the head: its outputs equal :meth:`outputs`."""
        model = TransferModel(self.featuriser, self.n_out, "linear")
        head = model.final_linear()
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(self.choice.coef, dtype=torch.float32))
            head.bias.copy_(torch.as_tensor(self.choice.intercept, dtype=torch.float32))
        return model.eval()


def fit_classical(train: Dataset, y_train: np.ndarray, val: Dataset, y_val: np.ndarray, task: str, n_out: int,
                  seed: int = 0, grid: list[float] | None = None,
                  featuriser: Backbone | None = None) -> ClassicalFit:
    """Fit the featuriser and the linear model on ``train``; choose C on ``val`` (the linear probe's protocol).

    Args:
        y_train, y_val: class indices, or the standardised regression target.
        n_out: number of classes (1 for regression).
        featuriser: the (unfitted) ``classical:`` backbone to fit; by default the one for ``train``'s modality.

    Raises:
        ConfigError: ``featuriser`` is not a classical featuriser for ``train``'s modality.
    """
    f = featuriser if featuriser is not None else create_classical(classical_spec(train.modality).split(":", 1)[1])
    if not isinstance(f, (PixelFeaturiser, TfidfFeaturiser)) or f.meta.modality != train.modality:
        spec = getattr(getattr(f, "meta", None), "spec", type(f).__name__)
        raise ConfigError(f"Strategy 'classical' fits its own featuriser; backbone '{spec}' is not one for "
                          f"{train.modality} data. Use --backbone {classical_spec(train.modality)}.")
    sk, xtr = fit_featuriser(f, train)
    scores: dict[str, float] = {}
    choice = search_grid(xtr, y_train, sk.transform(val), y_val, task, grid or GRID, n_out, seed=seed,
                         max_iter=MAX_ITER, scores=scores)
    m = ClassicalFit(f, task, n_out, choice, sk)
    m.details = {"chosen_C": choice.C, "val_scores": scores,
                 "features": TFIDF_FEATURES if m.modality == "text" else f"pixels {m.size}x{m.size}",
                 "model": "ridge" if task == "regression" else "logistic regression"}
    return m


def classical_features(ds: Dataset) -> tuple[np.ndarray, int, str]:
    """The classical baseline's features on the same footing as a backbone's: (features, dim, description).

    Images: the resized, standardised pixels the baseline feeds to logistic regression.
    Text: TF-IDF (word 1-2 grams, the same vectoriser), given as coordinates in its N-dimensional row space
    (``U S`` of its SVD, from the eigen-decomposition of the N x N Gram matrix). Every transferability score is
    unchanged by that rotation, so this is exact, not a truncation.
    """
    if ds.modality == "image":
        size = pixel_size(ds)
        raw = pixel_matrix(ds, size)
        x = np.asarray(fit_pixel_scaler(raw).transform(raw), dtype=np.float64)
        return x, x.shape[1], f"pixels {size}x{size} + LR"
    x = fitted_vectorizer(ds.inputs).transform(ds.inputs)
    gram = np.asarray((x @ x.T).todense(), dtype=np.float64)
    lam, u = np.linalg.eigh(gram)
    keep = lam > lam.max(initial=0.0) * len(lam) * np.finfo(np.float64).eps
    coords = u[:, keep] * np.sqrt(lam[keep])
    return coords, int(x.shape[1]), "TF-IDF word 1-2 grams + LR"


__all__ = ["FEATURISERS", "GRID", "SOURCE", "ClassicalFit", "SklearnFeatures", "classical_features", "classical_spec",
           "create_classical", "fit_classical", "fit_featuriser"]
