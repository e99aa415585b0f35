"""Transferability scores against known answers: hand-computed small cases and independent implementations."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from transferkit.errors import DataError
from transferkit.ranking.scores import (_spectrum, evidence, hscore, knn_loo, ledoit_wolf_shrinkage, leep, logme,
                                        maximise_evidence, nce)


@pytest.mark.parametrize("n,d", [(30, 8), (12, 40)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.3, 5.0), (4.0, 0.5)])
def test_evidence_equals_gaussian_marginal_likelihood(n, d, alpha, beta):
    """The SVD formula is log N(y; 0, F F^T / alpha + I / beta), per sample."""
    rng = np.random.default_rng(n + d)
    f = rng.normal(size=(n, d))
    y = (rng.random(n) > 0.5).astype(float)
    u, s2 = _spectrum(f)
    got = evidence(s2, u.T @ y, float(y @ y), n, d, alpha, beta)
    want = multivariate_normal(np.zeros(n), f @ f.T / alpha + np.eye(n) / beta).logpdf(y) / n
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_fixed_point_maximises_evidence():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(60, 5))
    y = (f[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(float)
    u, s2 = _spectrum(f)
    z = u.T @ y
    best = maximise_evidence(s2, z, float(y @ y), 60, 5)
    assert best.iterations < 200
    for fa, fb in ((1.2, 1.0), (0.8, 1.0), (1.0, 1.2), (1.0, 0.8)):
        assert evidence(s2, z, float(y @ y), 60, 5, best.alpha * fa, best.beta * fb) < best.log_evidence


def _blobs(n=300, c=3, d=16, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    return np.eye(c)[y] @ rng.normal(size=(c, d)) + noise * rng.normal(size=(n, d)), y


def test_logme_prefers_features_that_encode_the_labels():
    good, y = _blobs()
    noise = np.random.default_rng(1).normal(size=good.shape)
    weaker, _ = _blobs(noise=3.0)
    assert logme(good, y) > logme(weaker, y) > logme(noise, y)


def test_logme_invariant_to_rotation_and_global_scale():
    """An isotropic Gaussian prior: rotating the features or scaling them all changes nothing."""
    f, y = _blobs(n=80, d=10)
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(10, 10)))
    assert logme(f @ q, y) == pytest.approx(logme(f, y), abs=1e-6)
    assert logme(7.0 * f, y) == pytest.approx(logme(f, y), abs=1e-6)


def test_logme_handles_more_dims_than_samples_and_string_labels():
    rng = np.random.default_rng(3)
    y = np.array(["cat", "dog"] * 10)
    f = rng.normal(size=(20, 500))
    f[:, 0] += 3 * (y == "dog")
    v = logme(f, y)
    assert np.isfinite(v)
    assert v > logme(rng.normal(size=(20, 500)), y)


# Source-head probabilities theta(x) for 4 examples and 2 source classes; target labels y.
THETA = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
Y = np.array([0, 1, 0, 1])


def test_leep_hand_computed():
    # P(y, z) = 1/4 sum theta_z [y]: [[1.5, 0.5], [0.5, 1.5]] / 4 -> P(y | z) = [[.75, .25], [.25, .75]]
    # EEP(y_i | x_i): .9*.75+.1*.25 = .70, .2*.25+.8*.75 = .65, .6*.75+.4*.25 = .55, .3*.25+.7*.75 = .60
    want = np.mean(np.log([0.70, 0.65, 0.55, 0.60]))
    assert leep(THETA, Y) == pytest.approx(want, abs=1e-12)


def test_nce_hand_computed():
    assert nce(THETA, Y) == pytest.approx(0.0, abs=1e-12)  # argmax z = [0, 1, 0, 1] determines y
    mixed = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])  # z = [0, 0, 1, 1]
    assert nce(mixed, Y) == pytest.approx(-np.log(2.0), abs=1e-12)  # y is a coin flip given z
    # 3 examples: z = [0, 0, 1], y = [0, 1, 1]: H(Y|Z) = 2/3 * log 2
    assert nce(np.array([[1, 0], [1, 0], [0, 1.0]]), np.array([0, 1, 1])) == pytest.approx(-2 / 3 * np.log(2))


def test_leep_rejects_logits():
    with pytest.raises(DataError, match="softmax"):
        leep(np.log(THETA) + 3.0, Y)


def test_hscore_closed_form():
    # f = [0, 2, 1, 3], y = [0, 0, 1, 1]: var(f) = 1.25, var(E[f|y]) = var([1, 1, 2, 2]) = 0.25 -> 0.2
    assert hscore(np.array([[0.0], [2.0], [1.0], [3.0]]), np.array([0, 0, 1, 1]), shrinkage=False) \
        == pytest.approx(0.2)


def test_hscore_matches_direct_formula_and_sklearn_shrinkage():
    from sklearn.covariance import ledoit_wolf, ledoit_wolf_shrinkage as sk_shrinkage

    f, y = _blobs(n=50, d=12, noise=1.0)
    fc = f - f.mean(axis=0)
    means = np.zeros_like(fc)
    for c in np.unique(y):
        means[y == c] = fc[y == c].mean(axis=0)
    cov_g = means.T @ means / len(f)
    plain = np.trace(np.linalg.pinv(fc.T @ fc / len(f)) @ cov_g)
    shrunk = np.trace(np.linalg.pinv(ledoit_wolf(fc, assume_centered=True)[0]) @ cov_g)
    assert hscore(f, y, shrinkage=False) == pytest.approx(plain, rel=1e-9)
    assert hscore(f, y) == pytest.approx(shrunk, rel=1e-9)
    wide = np.random.default_rng(5).normal(size=(20, 90))
    assert ledoit_wolf_shrinkage(wide - wide.mean(0)) == pytest.approx(
        sk_shrinkage(wide - wide.mean(0), assume_centered=True), rel=1e-9)


def test_hscore_prefers_informative_features():
    good, y = _blobs(noise=0.5)
    assert hscore(good, y) > hscore(np.random.default_rng(4).normal(size=good.shape), y) + 0.5


@pytest.mark.parametrize("k", [1, 3])
def test_knn_loo_matches_sklearn(k):
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(k)
    f = rng.normal(size=(60, 4))
    y = (f[:, 0] + f[:, 1] + 0.8 * rng.normal(size=60) > 0).astype(int)  # 2 classes, odd k: no ties
    z = (f - f.mean(0)) / f.std(0)
    want = cross_val_score(KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute"), z, y,
                           cv=LeaveOneOut()).mean()
    assert knn_loo(f, y, k=k) == pytest.approx(want)


def test_knn_loo_separated_clusters_and_chunking():
    f, y = _blobs(n=90, noise=0.05)
    assert knn_loo(f, y) == 1.0
    rng = np.random.default_rng(6)
    g = rng.normal(size=(90, 8))
    assert knn_loo(g, y, chunk=7) == knn_loo(g, y, chunk=1000)


def test_scores_reject_bad_input():
    with pytest.raises(DataError, match="one label per row"):
        logme(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(DataError, match="NaN"):
        hscore(np.array([[np.nan], [1.0]]), np.array([0, 1]))
