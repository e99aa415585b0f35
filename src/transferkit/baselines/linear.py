"""Linear models on fixed features: the one regularisation grid search, shared by the classical baselines, the
linear probe and the hybrid head.

For each C of the grid a multinomial logistic regression (ridge with alpha = 1/C for regression) is fitted on the
training rows and scored on the validation rows (macro-F1, or minus the RMSE); the best-scoring C wins (the first
one on ties). Coefficients come back mapped onto every one of the task's ``n_out`` outputs, so that
``X @ coef.T + intercept`` are the model's logits and can be written into an ``nn.Linear`` as they are.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge

from ..engine.loop import validation_score

ABSENT_LOGIT = -1e4  # the logit of a class that has no training example


@dataclass
class GridChoice:
    """The validation-chosen model of a grid search: its score, C, coefficients [n_out, D] and intercept [n_out]."""

    score: float
    C: float
    coef: np.ndarray
    intercept: np.ndarray
    estimator: Any

    def outputs(self, X: Any) -> np.ndarray:
        """Logits (classification) or the standardised target (regression, one column) of features ``X``."""
        return np.asarray(X @ self.coef.T + self.intercept)


def full_coef(est: Any, task: str, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted scikit-learn linear model's coefficients mapped onto all ``n_out`` outputs.

    Binary logistic regression becomes two logits (0 and the decision function); classes absent from training get
    zero weights and an intercept of ``ABSENT_LOGIT``; regression gives one output. The estimator's precision is
    kept (float32 features give float32 coefficients), so ``X @ coef.T + intercept`` is its decision function.
    """
    if task == "regression":
        return est.coef_.reshape(1, -1), np.atleast_1d(est.intercept_)
    d = est.coef_.shape[1]
    coef = np.zeros((n_out, d), dtype=est.coef_.dtype)
    icpt = np.full(n_out, ABSENT_LOGIT, dtype=np.result_type(est.intercept_, np.float32))
    cls = est.classes_.astype(int)
    if len(cls) == 2 and est.coef_.shape[0] == 1:
        coef[cls[1]], icpt[cls[1]] = est.coef_[0], est.intercept_[0]
        coef[cls[0]], icpt[cls[0]] = 0.0, 0.0
    else:
        coef[cls], icpt[cls] = est.coef_, est.intercept_
    return coef, icpt


def linear_estimator(task: str, C: float, seed: int = 0, balanced: bool = False, max_iter: int = 1000) -> Any:
    """The unfitted estimator for one grid point: ridge (alpha = 1/C) or logistic regression."""
    if task == "regression":
        return Ridge(alpha=1.0 / C)
    return LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced" if balanced else None,
                              random_state=seed)


def search_grid(Xtr: Any, ytr: np.ndarray, Xva: Any, yva: np.ndarray, task: str, grid: Sequence[float],
                n_out: int, *, balanced: bool = False, seed: int = 0, max_iter: int = 1000,
                scores: dict[str, float] | None = None, key: str = "{C:g}") -> GridChoice:
    """Fit one linear model per C of ``grid`` on (``Xtr``, ``ytr``), choose the best on (``Xva``, ``yva``).

    Args:
        Xtr, Xva: dense or sparse feature matrices (already standardised where the caller wants that).
        task: "classification" (``ytr`` class indices) or "regression" (``ytr`` standardised targets).
        n_out: number of outputs (classes, or 1).
        balanced: class-balanced logistic-regression weights.
        scores: if given, receives every grid point's validation score under ``key.format(C=C)``.

    Returns:
        The validation-chosen :class:`GridChoice` (the first best C on ties).
    """
    if not len(grid):
        raise ValueError("the regularisation grid is empty")
    best: GridChoice | None = None
    for C in grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = linear_estimator(task, C, seed, balanced, max_iter).fit(Xtr, ytr)
        coef, icpt = full_coef(est, task, n_out)
        choice = GridChoice(float("nan"), C, coef, icpt, est)
        s = validation_score(choice.outputs(Xva), yva, task)
        choice.score = s
        if scores is not None:
            scores[key.format(C=C)] = s
        if best is None or s > best.score:
            best = choice
    return best


__all__ = ["ABSENT_LOGIT", "GridChoice", "full_coef", "linear_estimator", "search_grid"]
