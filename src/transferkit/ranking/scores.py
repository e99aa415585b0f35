"""Transferability scores: pure NumPy functions of frozen features (or source-head outputs) and target labels.

Higher is better for every score. Only differences between candidates on the *same* data mean something.

* LogME -- You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
  ICML 2021. Log of the maximum evidence of a Bayesian linear model (one per class, one-hot target),
  per sample; evidence maximised over the prior precision alpha and noise precision beta by fixed-point
  updates computed from one SVD of the feature matrix.
* LEEP -- Nguyen, Hassner, Seeger, Archambeau, "LEEP: A New Measure to Evaluate Transferability of Learned
  Representations", ICML 2020. Needs the source classifier's probabilities.
* NCE -- Tran, Nguyen, Hassner, "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019.
  Negative conditional entropy H(Y | Z) of target labels given the source head's hard labels.
* H-score -- Bao, Li, Huang, Zheng, Tao, Zhang, Bai, "An Information-Theoretic Approach to Transferability in
  Task Transfer Learning", ICIP 2019: tr(cov(f)^-1 cov(E[f | y])); with Ledoit-Wolf shrinkage of cov(f) by default
  (Ibrahim, Ponomareva, Mazumder, 2022), which keeps it stable when the feature dimension nears the sample count.
* k-NN leave-one-out accuracy: a simple, assumption-light reference probe.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

LOG_2PI = float(np.log(2.0 * np.pi))


def _check(features: np.ndarray, labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2:
        raise DataError(f"{name} needs a 2-D array [N, D]; got shape {f.shape}.")
    if y.ndim != 1 or len(y) != f.shape[0]:
        raise DataError(f"{name} needs one label per row: {f.shape[0]} rows but labels of shape {y.shape}.")
    if f.shape[0] < 2:
        raise DataError(f"{name} needs at least 2 samples; got {f.shape[0]}.")
    if not np.all(np.isfinite(f)):
        raise DataError(f"{name}: the features contain NaN or infinite values.")
    return f, _encode(y)


def _encode(y: np.ndarray) -> np.ndarray:
    """Labels of any type -> 0..C-1."""
    if np.issubdtype(y.dtype, np.integer) and y.min() >= 0:
        _, inv = np.unique(y, return_inverse=True)
        return inv.astype(np.int64)
    _, inv = np.unique(y.astype(str), return_inverse=True)
    return inv.astype(np.int64)


# -- LogME -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """Maximised log evidence (per sample) of one target column, with the alpha and beta that reach it."""

    log_evidence: float
    alpha: float
    beta: float
    iterations: int


def _spectrum(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors U [N, r] and squared singular values s2 [r] of f (thin SVD, tiny ones dropped)."""
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(f.shape) * np.finfo(np.float64).eps
    return u[:, keep], s[keep] ** 2


def evidence(s2: np.ndarray, z: np.ndarray, y_norm2: float, n: int, d: int, alpha: float, beta: float) -> float:
    """Log evidence per sample of y under y = F w + e, w ~ N(0, I/alpha), e ~ N(0, I/beta).

    Args:
        s2: squared singular values of F (the r non-zero ones); z = U^T y (U: their left singular vectors).
        y_norm2: ||y||^2; n, d: shape of F.
    """
    t = alpha / beta
    shrink = s2 + t
    m2 = float(np.sum(s2 * z**2 / shrink**2))                      # ||m||^2 (posterior mean of w)
    res2 = float(np.sum((t * z / shrink) ** 2)) + max(y_norm2 - float(z @ z), 0.0)  # ||F m - y||^2
    logdet = float(np.sum(np.log(alpha + beta * s2))) + (d - len(s2)) * np.log(alpha)
    ev = 0.5 * (n * np.log(beta) + d * np.log(alpha) - n * LOG_2PI - beta * res2 - alpha * m2 - logdet)
    return ev / n


def maximise_evidence(s2: np.ndarray, z: np.ndarray, y_norm2: float, n: int, d: int,
                      tol: float = 1e-6, max_iter: int = 200) -> Evidence:
    """MacKay's fixed-point updates: gamma = sum(beta s2 / (alpha + beta s2)), alpha = gamma / ||m||^2,
    beta = (n - gamma) / ||F m - y||^2, until alpha/beta settles."""
    alpha, beta = 1.0, 1.0
    tiny = 1e-300
    it = 0
    for it in range(1, max_iter + 1):
        t = alpha / beta
        shrink = s2 + t
        gamma = float(np.sum(s2 / shrink))
        m2 = float(np.sum(s2 * z**2 / shrink**2))
        res2 = float(np.sum((t * z / shrink) ** 2)) + max(y_norm2 - float(z @ z), 0.0)
        new_alpha = float(min(max(gamma / max(m2, tiny), 1e-12), 1e12))
        new_beta = float(min(max((n - gamma) / max(res2, tiny), 1e-12), 1e12))
        done = abs(new_alpha / new_beta - t) <= tol * t
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return Evidence(float(evidence(s2, z, y_norm2, n, d, alpha, beta)), alpha, beta, it)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: mean over classes of the maximum log evidence per sample of a Bayesian linear model that
    predicts the class's one-hot column from the features. One SVD serves every class.

    Args:
        features: [N, D] frozen features (any D; D > N is fine).
        labels: [N] class labels.
    Returns:
        The score (higher = more transferable); comparable only across feature sets on the same labels.
    """
    f, y = _check(features, labels, "LogME")
    n, d = f.shape
    u, s2 = _spectrum(f)
    scores = []
    for c in range(int(y.max()) + 1):
        col = (y == c).astype(np.float64)
        scores.append(maximise_evidence(s2, u.T @ col, float(col @ col), n, d).log_evidence)
    return float(np.mean(scores))


# -- LEEP / NCE --------------------------------------------------------------------------------------------
def _check_probs(source_probs: np.ndarray, labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    p, y = _check(source_probs, labels, name)
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise DataError(f"{name} needs source-head probabilities (rows >= 0 summing to 1); pass softmax(logits).")
    return p, y


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: mean log-likelihood of the target labels under the 'expected empirical predictor'
    p(y | x) = sum_z P(y | z) theta_z(x), with P(y | z) estimated from the soft joint of source and target labels.

    Args:
        source_probs: [N, Z] source-head probabilities theta(x).
        labels: [N] target labels.
    """
    p, y = _check_probs(source_probs, labels, "LEEP")
    n, n_cls = len(y), int(y.max()) + 1
    onehot = np.eye(n_cls)[y]                                     # [N, C]
    joint = onehot.T @ p / n                                      # P(y, z) [C, Z]
    cond = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-300)  # P(y | z)
    eep = p @ cond.T                                              # [N, C]
    return float(np.mean(np.log(np.maximum(eep[np.arange(n), y], 1e-300))))


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """NCE: -H(Y | Z) with Z the source head's hard label argmax theta(x), from empirical counts.

    Args:
        source_probs: [N, Z] source-head probabilities (or logits: only the argmax is used).
        labels: [N] target labels.
    """
    p, y = _check(source_probs, labels, "NCE")
    z = p.argmax(axis=1)
    n = len(y)
    _, zi = np.unique(z, return_inverse=True)
    joint = np.zeros((int(y.max()) + 1, int(zi.max()) + 1))
    np.add.at(joint, (y, zi), 1.0)
    joint /= n
    pz = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log((joint / pz)[nz])))


# -- H-score ----------------------------------------------------------------------------------------------
def ledoit_wolf_shrinkage(f: np.ndarray) -> float:
    """Ledoit-Wolf shrinkage intensity for centred data ``f`` [N, D] (the estimator scikit-learn implements),
    from the N x N (or D x D) Gram matrix, so that it stays cheap when D is large."""
    n, d = f.shape
    sq = np.einsum("ij,ij->i", f, f)                       # ||x_i||^2
    gram = f @ f.T if n <= d else f.T @ f
    trace = float(sq.sum()) / n                            # tr(S)
    mu = trace / d
    beta_ = float(np.sum(sq**2))                           # sum_jk sum_i x_ij^2 x_ik^2
    delta_ = float(np.sum(gram**2)) / n**2                 # ||S||_F^2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta <= 0 or delta <= 0 else float(beta / delta)


def hscore(features: np.ndarray, labels: np.ndarray, shrinkage: bool = True) -> float:
    """H-score tr(cov(f)^-1 cov(E[f | y])) with population covariances, computed in the span of the centred
    features (one thin SVD; cov(E[f | y]) lives in that span), so D >> N costs no D x D inverse.

    Args:
        shrinkage: estimate cov(f) with Ledoit-Wolf shrinkage (stable when D is close to or above N);
            False gives the original estimator (pseudo-inverse on the span).
    """
    f, y = _check(features, labels, "H-score")
    n, d = f.shape
    f = f - f.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(n, d) * np.finfo(np.float64).eps
    s, vt = s[keep], vt[keep]
    eig = s**2 / n                                         # eigenvalues of cov(f) on its span
    if shrinkage:
        delta = ledoit_wolf_shrinkage(f)
        eig = (1.0 - delta) * eig + delta * float(np.sum(f * f)) / (n * d)
    means = np.zeros_like(f)
    for c in np.unique(y):
        rows = y == c
        means[rows] = f[rows].mean(axis=0)
    g = means @ vt.T                                       # class means in the span's basis [N, r]
    return float(np.sum(np.sum(g * g, axis=0) / n / eig))


# -- k-NN leave-one-out -----------------------------------------------------------------------------------
def knn_loo(features: np.ndarray, labels: np.ndarray, k: int = 5, standardise: bool = True,
            chunk: int = 1024) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote (cosine similarity of centred features);
    ties go to the class of the nearest tied neighbour.

    Args:
        k: neighbours (capped at N - 1).
        standardise: scale each feature to unit variance first (False: features are used as given, centred).
    """
    f, y = _check(features, labels, "k-NN")
    n = len(y)
    k = max(1, min(int(k), n - 1))
    f = f - f.mean(axis=0, keepdims=True)
    if standardise:
        sd = f.std(axis=0)
        f = f / np.where(sd > 1e-12, sd, 1.0)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    n_cls = int(y.max()) + 1
    correct = 0
    for s in range(0, n, chunk):
        sim = f[s:s + chunk] @ f.T
        rows = np.arange(sim.shape[0])
        sim[rows, s + rows] = -np.inf                               # leave the sample itself out
        nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]         # nearest first
        votes = np.zeros((sim.shape[0], n_cls))
        np.add.at(votes, (np.repeat(rows, k), y[nn].ravel()), 1.0)
        # Tie-break: among the top-voted classes, the one whose first neighbour is nearest.
        rank_bonus = np.zeros_like(votes)
        for j in range(k - 1, -1, -1):
            rank_bonus[rows, y[nn[:, j]]] = (k - j) / (k + 1.0)
        pred = np.argmax(votes + rank_bonus, axis=1)
        correct += int(np.sum(pred == y[s:s + chunk]))
    return correct / n


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


FEATURE_SCORES = {"logme": logme, "hscore": hscore, "knn": knn_loo}
SOURCE_SCORES = {"leep": leep, "nce": nce}
METRICS = ("logme", "leep", "nce", "hscore", "knn")

__all__ = ["Evidence", "FEATURE_SCORES", "METRICS", "SOURCE_SCORES", "evidence", "hscore", "knn_loo",
           "ledoit_wolf_shrinkage", "leep", "logme", "maximise_evidence", "nce", "softmax"]
