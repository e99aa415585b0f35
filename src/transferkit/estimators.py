"""scikit-learn compatible estimators: ``TransferClassifier`` and ``TransferRegressor``.

Constructors only store parameters; ``fit`` validates them (through ``FitConfig``) and sets learned
attributes ending in ``_``. Both save to and load from the same run format as the CLI.

They follow scikit-learn's conventions for non-tabular estimators: ``__sklearn_tags__`` declares image arrays
and texts (not 2-D tables) as input, bad inputs raise ``ValueError`` (:class:`~transferkit.errors.DataError`),
and ``n_features_in_`` is not set (images of any size are resized, so there is no fixed feature count).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import Tags

from .config import FitConfig
from .data import from_arrays
from .engine.loop import predict_outputs
from .errors import DataError
from .evaluation.metrics import softmax
from .features.inputs import Inputs

_CLASS_TARGETS = ("binary", "multiclass")


def _check_X(X: Any, owner: str) -> Any:
    """``X`` if ``from_arrays`` can use it, else a ``ValueError`` (``TypeError`` for non-numeric pixels)."""
    if sparse.issparse(X):
        raise DataError(f"X is a sparse {type(X).__name__}; {owner} does not support sparse input. "
                        "Pass dense images [N,H,W(,C)] or a list of texts.")
    if isinstance(X, (list, tuple)) and len(X) == 0:
        raise DataError(f"X is empty (0 samples); pass at least one image or text to {owner}.")
    X = _as_array(X)
    if isinstance(X, np.ndarray):
        return _check_array(X, owner)
    return X


def _as_array(X: Any) -> Any:
    """Texts and paths stay as they are; other array-likes (nested lists, pandas, wrappers) become arrays."""
    if isinstance(X, np.ndarray) or (isinstance(X, (list, tuple)) and any(isinstance(v, str) for v in X)):
        return X
    if not (isinstance(X, (list, tuple)) or hasattr(X, "__array__")):
        return X
    try:
        return np.asarray(X)
    except ValueError as e:
        raise DataError(f"X cannot be read as an image array ({str(e).splitlines()[0]}); pass images of one "
                        "shape [N,H,W(,C)].") from None


def _check_array(X: np.ndarray, owner: str) -> np.ndarray:
    """An image array [N,H,W(,C)] of finite real numbers, or a 1-D array of texts."""
    if X.ndim == 1 and X.size and all(isinstance(v, str) for v in X):
        return X
    if X.ndim < 3:
        raise DataError(f"X has shape {X.shape}; {owner} takes images [N,H,W(,C)] or a list of texts, not a "
                        f"{X.ndim}-D array. Reshape your data (grey images are [N,H,W]); for tabular features "
                        "use a scikit-learn estimator.")
    if X.shape[0] == 0:
        raise DataError(f"X has shape {X.shape}: 0 samples; pass at least one image to {owner}.")
    if 0 in X.shape[1:3]:
        raise DataError(f"X has shape {X.shape}: images with a side of 0 pixels; pass images of at least 1x1.")
    if X.dtype.kind == "c":
        raise DataError(f"X has complex dtype {X.dtype}: Complex data not supported; pass real pixel values.")
    if X.dtype.kind == "O":
        X = _numeric_pixels(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"X has dtype {X.dtype}; image pixels must be numbers (bool, int or float). Pass texts "
                        "as a flat list of strings.")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        n_nan, n_inf = int(np.isnan(X).sum()), int(np.isinf(X).sum())
        raise DataError(f"X contains {n_nan} NaN and {n_inf} inf pixel value(s); replace them (e.g. with "
                        "np.nan_to_num) or drop those images.")
    return X


def _numeric_pixels(X: np.ndarray) -> np.ndarray:
    """An object image array as float64; pixels that are not numbers raise ``TypeError`` (numpy's wording)."""
    try:
        return X.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"X is an object array with a non-numeric pixel: {e}. Pass numeric images.") from None


def _check_y(y: Any, n: int, task: str, owner: str) -> np.ndarray:
    """``y`` as a 1-D array of class labels (classification) or finite floats (regression), else ``ValueError``."""
    if y is None:
        raise DataError(f"{owner} requires y to be passed, but the target y is None. Pass one target per sample.")
    raw = _one_d(np.asarray(y, dtype=object), owner)
    _no_missing(raw)
    if len(raw) != n:
        raise DataError(f"X has {n} samples but y has {len(raw)}; pass exactly one target per sample.")
    return _regression_y(raw) if task == "regression" else _class_y(np.asarray(y).reshape(len(raw)), owner)


def _one_d(y: np.ndarray, owner: str) -> np.ndarray:
    """``y`` raveled; a column vector warns (as scikit-learn does), other 2-D targets raise."""
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                      "to (n_samples, ), for example using ravel().", DataConversionWarning, stacklevel=5)
        return y.ravel()
    if y.ndim != 1:
        raise DataError(f"y has shape {y.shape}; {owner} takes one target per sample (a 1-D array), "
                        "not multi-output targets.")
    return y


def _no_missing(raw: np.ndarray) -> None:
    """Reject NaN / None / inf targets (before numpy turns NaN among strings into the label 'nan')."""
    import pandas as pd

    bad = np.flatnonzero(pd.isna(raw) | np.asarray([_is_inf(v) for v in raw], dtype=bool))
    if bad.size:
        raise DataError(f"y has {bad.size} missing or infinite value(s) (first: {raw[bad[0]]!r} at index "
                        f"{bad[0]}); drop those samples or give them a target.")


def _is_inf(v: Any) -> bool:
    return isinstance(v, (float, np.floating)) and bool(np.isinf(v))


def _regression_y(raw: np.ndarray) -> np.ndarray:
    try:
        return raw.astype(np.float64)
    except (TypeError, ValueError):
        bad = next(v for v in raw if not _is_number(v))
        raise DataError(f"y has a non-numeric value {bad!r}; regression needs numbers "
                        "(use TransferClassifier for class labels).") from None


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _class_y(y: np.ndarray, owner: str) -> np.ndarray:
    """Class labels: a continuous or unknown target raises rather than becoming one class per value."""
    from sklearn.utils.multiclass import type_of_target

    kind = type_of_target(y, input_name="y")
    if kind == "continuous":
        example = next(v for v in y if float(v) != int(v))
        raise DataError(f"y is continuous (e.g. {example!r} is not an integer class label); {owner} needs class "
                        "labels. Use TransferRegressor for numeric targets, or bin y into classes.")
    if kind not in _CLASS_TARGETS:
        raise DataError(f"Unknown label type: y is {kind!r}; {owner} needs one class label (int or str) per "
                        "sample.")
    classes = np.unique(y.astype(str))
    if len(classes) < 2:
        raise DataError(f"y has only one class ({y[0]!r}); a classifier needs samples of at least 2 classes.")
    return y


class _TransferBase(BaseEstimator):
    _task = "classification"

    def __init__(self, backbone: str = "packaged:efficientnet_lite0", strategy: str = "linear-probe",
                 epochs: int = 5, lr: float | None = None, batch_size: int = 32, freeze: int = 0,
                 layer_decay: float = 1.0, image_size: int | None = None, max_length: int | None = None,
                 val_fraction: float = 0.15, seed: int = 0, progress: bool = False, options: dict | None = None):
        self.backbone = backbone
        self.strategy = strategy
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.freeze = freeze
        self.layer_decay = layer_decay
        self.image_size = image_size
        self.max_length = max_length
        self.val_fraction = val_fraction
        self.seed = seed
        self.progress = progress
        self.options = options

    def __sklearn_tags__(self) -> Tags:
        """Inputs are image arrays [N,H,W(,C)] or texts, never 2-D tables; a target is required."""
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        return tags

    def _config(self) -> FitConfig:
        params = {k: v for k, v in self.get_params().items() if k not in ("progress", "options")}
        return FitConfig.from_dict({**params, **(self.options or {}), "task": self._task}, where=type(self).__name__)

    def fit(self, X, y, X_val=None, y_val=None):
        """Fit on X, y; validation data come from ``X_val, y_val`` or a seeded split of X."""
        from .data.splits import stratified_split
        from .pipeline import fit as fit_pipeline

        cfg = self._config()
        ds = self._dataset(X, y)
        if X_val is not None:
            val = self._dataset(X_val, y_val, value_max=ds.value_max, what="validation ")
            train = ds
        else:
            tr, va = stratified_split(ds.y, (cfg.val_fraction,), cfg.seed, self._task == "classification")
            train, val = ds.subset(tr), ds.subset(va)
        result = fit_pipeline(cfg, train=train, val=val, test=val, progress=self.progress, save=False)
        self.model_ = result.model
        self.labels_ = result.labels
        self.value_max_ = ds.value_max
        self.config_ = cfg
        self.val_metrics_ = result.val_metrics
        if self._task == "classification":
            self.classes_ = np.asarray(result.labels["classes"])
        return self

    def _dataset(self, X, y, value_max: float | None = None, what: str = ""):
        """Validated ``X, y`` as a dataset (``what`` names validation data in errors)."""
        owner = f"{type(self).__name__} ({what}data)" if what else type(self).__name__
        X = _check_X(X, owner)
        n = len(X)
        if n < 2 and not what:
            raise DataError(f"X has {n} sample; fitting {owner} needs at least 2 (some are held out for "
                            "validation).")
        return from_arrays(X, _check_y(y, n, self._task, owner), value_max=value_max)

    def _outputs(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        ds = from_arrays(_check_X(X, type(self).__name__), value_max=self.value_max_)
        return predict_outputs(self.model_, Inputs(ds, self.model_.backbone), max(self.batch_size, 64))

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write a run directory (same format as `transferkit fit`)."""
        from sklearn.utils.validation import check_is_fitted

        from .runs.lifecycle import start_run
        from .runs.store import run_info, save_model_files, write_json

        check_is_fitted(self, "model_")
        p = Path(path)
        with start_run(p.parent, p.name, overwrite=overwrite, log_file="save.log") as run:
            save_model_files(run.dir, self.model_, self.config_, {**self.labels_, "value_max": self.value_max_})
            write_json(run.dir / "metrics.json", {"val": self.val_metrics_})
            head = "linear" if self.model_.head.__class__.__name__ == "Linear" else "mlp"
            write_json(run.dir / "run.json", run_info(self.config_, __import__("time").time(),
                                                      {"name": p.name, "head": head, "estimator": type(self).__name__}))
        return run.final

    @classmethod
    def load(cls, path: str | Path) -> Any:
        from .runs import load_run

        run = load_run(path)
        c = run.config
        t = c.training
        est = cls(backbone=c.backbone, strategy=c.strategy, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size,
                  freeze=t.freeze, layer_decay=t.layer_decay, image_size=c.image_size, max_length=c.max_length,
                  val_fraction=c.val_fraction, seed=c.seed)
        est.model_, est.config_ = run.model, c
        est.labels_ = {k: v for k, v in run.labels.items() if k != "value_max"}
        est.value_max_ = run.labels.get("value_max")
        est.val_metrics_ = {}
        if "classes" in run.labels:
            est.classes_ = np.asarray(run.labels["classes"])
        return est


class TransferClassifier(ClassifierMixin, _TransferBase):
    """Classifier on a pretrained backbone. ``X``: numpy images [N,H,W(,C)] or lists of texts / image paths."""

    _task = "classification"

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self._outputs(X))

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)]


class TransferRegressor(RegressorMixin, _TransferBase):
    """Regressor on a pretrained backbone (target standardised internally)."""

    _task = "regression"

    def predict(self, X) -> np.ndarray:
        out = self._outputs(X)[:, 0]
        return out * float(self.model_.target_std) + float(self.model_.target_mean)
