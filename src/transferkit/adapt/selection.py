"""Choosing a checkpoint / trade-off weight without target labels.

Criteria (higher is better):

* ``dev`` (default): minus the Deep Embedded Validation risk (You et al., "Towards Accurate Model Selection in
  Deep Unsupervised Domain Adaptation", ICML 2019): the source-validation loss, importance-weighted by
  ``p(target | x) / p(source | x)`` from a logistic-regression domain classifier on the candidate's own
  features, with the paper's control variate to reduce variance.
* ``source-val``: source validation accuracy (ignores the target entirely).
* ``entropy``: source validation accuracy minus the mean prediction entropy on target data (normalised by
  ``log C``), rewarding confident target predictions that keep the source task.
* ``last``: the final checkpoint of the largest trade-off (no selection).

The oracle (best target test accuracy) is computed alongside for the report, and never used to choose.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, suggest

CRITERIA = ("dev", "source-val", "entropy", "last")


def dev_risk(f_src_train: np.ndarray, f_target: np.ndarray, f_src_val: np.ndarray, loss_src_val: np.ndarray,
             seed: int = 0) -> float:
    """DEV risk estimate of the target loss (lower is better)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([f_src_train, f_target]).astype(np.float64)
    d = np.r_[np.zeros(len(f_src_train)), np.ones(len(f_target))]
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(scaler.transform(x), d)
    p = np.clip(clf.predict_proba(scaler.transform(f_src_val.astype(np.float64)))[:, 1], 1e-4, 1 - 1e-4)
    w = p / (1 - p) * (len(f_src_train) / len(f_target))
    wl = w * loss_src_val
    var_w = float(np.var(w, ddof=1)) if len(w) > 1 else 0.0
    eta = -float(np.cov(wl, w, ddof=1)[0, 1]) / var_w if var_w > 1e-12 else 0.0
    return float(wl.mean() + eta * w.mean() - eta)


def criterion_score(scores: dict[str, float], criterion: str) -> float:
    """The value a criterion maximises, from a candidate's unsupervised scores."""
    if criterion == "dev":
        return -scores["dev_risk"]
    if criterion == "source-val":
        return scores["source_val_accuracy"]
    if criterion == "entropy":
        return scores["source_val_accuracy"] - scores["target_entropy"]
    raise ConfigError(f"Unknown selection criterion '{criterion}'.{suggest(criterion, CRITERIA)} "
                      f"Choose from: {', '.join(CRITERIA)}.")


def choose(candidates: list[dict[str, Any]], criterion: str) -> int:
    """Index of the chosen candidate (each a dict with 'scores', 'trade_off' and 'step'); ties go to the later."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    if criterion == "last":
        top = max(c["trade_off"] for c in candidates)
        return max((i for i, c in enumerate(candidates) if c["trade_off"] == top), key=lambda i: candidates[i]["step"])
    values = [criterion_score(c["scores"], criterion) for c in candidates]
    best = max(values)
    return max(i for i, v in enumerate(values) if v >= best - 1e-12)


def oracle(candidates: list[dict[str, Any]], key: str = "accuracy") -> int | None:
    """Index of the candidate with the best target test ``key`` (peeks at target labels; reporting only)."""
    have = [i for i, c in enumerate(candidates) if c.get("oracle")]
    if not have:
        return None
    best = max(candidates[i]["oracle"][key] for i in have)
    return max(i for i in have if candidates[i]["oracle"][key] >= best - 1e-12)
