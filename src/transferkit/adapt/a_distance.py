"""Proxy A-distance between two sets of features.

Ben-David et al., "Analysis of Representations for Domain Adaptation", NeurIPS 2007: train a linear
classifier to tell the domains apart; with held-out error ``e`` the proxy A-distance is ``2 (1 - 2 e)``,
about 0 when the domains are indistinguishable and 2 when they are linearly separable.
"""
from __future__ import annotations

import numpy as np


def proxy_a_distance(f_s: np.ndarray, f_t: np.ndarray, seed: int = 0, max_per_domain: int = 1000) -> float:
    """PAD in [0, 2] from a logistic-regression domain classifier trained on half of a balanced sample of
    each domain and tested on the other half (the error is capped at 0.5: worse than chance counts as 0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(f_s), len(f_t), max_per_domain)
    if n < 4:
        raise ValueError(f"proxy_a_distance needs at least 4 examples per domain; got {len(f_s)} and {len(f_t)}.")
    s = np.asarray(f_s, dtype=np.float64)[rng.permutation(len(f_s))[:n]]
    t = np.asarray(f_t, dtype=np.float64)[rng.permutation(len(f_t))[:n]]
    half = n // 2
    x_tr, y_tr = np.concatenate([s[:half], t[:half]]), np.r_[np.zeros(half), np.ones(half)]
    x_te, y_te = np.concatenate([s[half:], t[half:]]), np.r_[np.zeros(n - half), np.ones(n - half)]
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x_tr), y_tr)
    err = float((clf.predict(scaler.transform(x_te)) != y_te).mean())
    return 2.0 * (1.0 - 2.0 * min(err, 0.5))
