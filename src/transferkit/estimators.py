"""scikit-learn compatible estimators: ``TransferClassifier`` and ``TransferRegressor``.

Constructors only store parameters; ``fit`` validates them (through ``FitConfig``) and sets learned
attributes ending in ``_``. Both save to and load from the same run format as the CLI.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from .config import FitConfig
from .data import from_arrays
from .engine.loop import predict_outputs
from .evaluation.metrics import softmax
from .features.inputs import Inputs


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

    def _config(self) -> FitConfig:
        params = {k: v for k, v in self.get_params().items() if k not in ("progress", "options")}
        return FitConfig.from_dict({**params, **(self.options or {}), "task": self._task}, where=type(self).__name__)

    def fit(self, X, y, X_val=None, y_val=None):
        """Fit on X, y; validation data come from ``X_val, y_val`` or a seeded split of X."""
        from .data.splits import stratified_split
        from .pipeline import fit as fit_pipeline

        cfg = self._config()
        ds = from_arrays(X, y)
        if X_val is not None:
            val = from_arrays(X_val, y_val, value_max=ds.value_max)
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
        self.n_features_in_ = 1
        return self

    def _outputs(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        ds = from_arrays(X, value_max=self.value_max_)
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
        est.n_features_in_ = 1
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
