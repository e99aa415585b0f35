"""The scikit-learn contract: estimator tags, sklearn's own estimator checks, and ValueErrors for bad input.

The estimators take images [N,H,W(,C)] or texts, never 2-D tables, and say so in ``__sklearn_tags__``. For such
an estimator ``check_estimator`` runs nothing (every check feeds 2-D float tables). To run sklearn's battery
anyway, ``RowsClassifier`` / ``RowsRegressor`` (test-only) present each row of a 2-D table as a 1 x F grey image
and declare ``two_d_array`` for sklearn; everything else (validation, fitting, prediction, pickling, cloning) is
the real estimator's. The checks that cannot apply to images are passed to sklearn as ``expected_failed_checks``
and listed below with the reason and the failure that proves it.
"""
from __future__ import annotations

import re
import warnings
from typing import Any, NamedTuple

import numpy as np
import pytest
from sklearn.exceptions import DataConversionWarning, NotFittedError, SkipTestWarning
from sklearn.utils.estimator_checks import check_estimator

from transferkit import TransferClassifier, TransferRegressor
from transferkit.errors import ConfigError, DataError, TransferkitError

FAST: dict[str, Any] = {"strategy": "classical"}  # resized pixels + logistic regression / ridge: ~0.1 s a fit


def rows_as_images(X: Any) -> Any:
    """A 2-D numeric table (N, F) as N grey images of 1 x F pixels; anything else unchanged."""
    if isinstance(X, (list, tuple)) or hasattr(X, "__array__"):
        a = np.asarray(X)
        if a.ndim == 2 and a.dtype.kind not in "US":
            return a[:, None, :]
    return X


class _RowsAsImages:
    """Test-only: sklearn's checks feed tables; each row becomes an image, nothing else changes."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True  # what sklearn feeds; the estimator sees 1 x F images
        tags.input_tags.string = False  # image mode: X holds numbers, not texts
        return tags

    def fit(self, X, y=None, **kwargs):
        return super().fit(rows_as_images(X), y, **kwargs)

    def predict(self, X):
        return super().predict(rows_as_images(X))


class RowsClassifier(_RowsAsImages, TransferClassifier):
    def predict_proba(self, X):
        return super().predict_proba(rows_as_images(X))


class RowsRegressor(_RowsAsImages, TransferRegressor):
    pass


class Expected(NamedTuple):
    reason: str
    failure: str  # a regex the check's error must match, so an entry cannot go stale


NOT_FOR_IMAGES = {
    "check_n_features_in": Expected(
        "n_features_in_ is not set: images of any size are resized to image_size, so there is no feature count "
        "(as for sklearn's text vectorisers)", r"^$"),
    "check_n_features_in_after_fitting": Expected(
        "same: predict accepts images of another size (it resizes them) instead of raising 'X has 1 features'",
        r"does not set the `n_features_in_` attribute"),
    "check_estimators_empty_data_messages": Expected(
        "wants check_array's tabular message '0 feature(s) (shape=(12, 0))'; a 1 x 0 image is rejected with a "
        "ValueError of its own (0 samples pass the check's first part; see test_empty_and_zero_sized_X)",
        r"patterns:\n0 feature.*\nGot X has shape \(12, 1, 0\): images with a side of 0 pixels"),
}
CLASSIFIER_ONLY = {
    "check_classifiers_train": Expected(
        "expects predict(X.T) to raise for a different feature count; X.T is a valid batch of 1 x N images "
        "(the rest of this check is repeated in test_classifier_train_consistency)",
        r"number of features in predict is different"),
}
# float32 inference: a batched matrix product rounds a row differently depending on its place in the batch
# (~1e-6 relative), above these checks' rtol=1e-7; whether it shows depends on the BLAS kernel and the data.
FLOAT32_TOLERANCE = {
    "check_methods_sample_order_invariance": Expected(
        "float32 outputs differ by ~1e-6 relative when rows are reordered (see test_row_order_and_subsets)",
        r"is not invariant when applied to a dataset\s*with different sample order"),
    "check_methods_subset_invariance": Expected(
        "float32 outputs differ by ~1e-6 relative between batches and the full set (same test)",
        r"is not invariant when applied to a subset"),
}
SKIPPED_BY_SKLEARN = {
    "check_array_api_input": "array API dispatch needs SCIPY_ARRAY_API set before scipy is imported; the "
                             "estimators declare no array API support (sklearn raises SkipTest)",
}


def expected_failures(est) -> dict[str, Expected]:
    own = CLASSIFIER_ONLY if isinstance(est, TransferClassifier) else {}
    return {**NOT_FOR_IMAGES, **own, **FLOAT32_TOLERANCE}


@pytest.mark.parametrize("est", [RowsClassifier(**FAST), RowsRegressor(**FAST)], ids=lambda e: type(e).__name__)
def test_sklearn_estimator_checks(est, monkeypatch):
    monkeypatch.delenv("SCIPY_ARRAY_API", raising=False)
    expected = expected_failures(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(est, on_fail=None, expected_failed_checks={k: v.reason for k, v in expected.items()})
    by_status: dict[str, set[str]] = {}
    for r in results:
        by_status.setdefault(r["status"], set()).add(r["check_name"])
    failed = {r["check_name"]: f"{type(r['exception']).__name__}: {r['exception']}" for r in results
              if r["status"] == "failed"}
    assert not failed, failed
    assert by_status.get("skipped", set()) == set(SKIPPED_BY_SKLEARN)
    structural = set(expected) - set(FLOAT32_TOLERANCE)
    assert structural <= by_status.get("xfail", set()), "a listed check now passes: remove it from the list"
    assert by_status.get("xfail", set()) <= set(expected)
    wrong_failure = {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "xfail"
                     and not re.search(expected[r["check_name"]].failure, str(r["exception"]), re.DOTALL)}
    assert not wrong_failure, wrong_failure
    assert len(by_status["passed"]) >= 40  # the battery really ran


@pytest.mark.parametrize("cls", [TransferClassifier, TransferRegressor])
def test_tags_declare_images_and_texts_not_tables(cls):
    from sklearn.utils import get_tags

    tags = get_tags(cls(**FAST))
    inp = tags.input_tags
    assert (inp.two_d_array, inp.three_d_array, inp.string, inp.allow_nan, inp.sparse) == (False, True, True,
                                                                                          False, False)
    assert tags.target_tags.required
    assert tags.estimator_type == ("classifier" if cls is TransferClassifier else "regressor")
    # sklearn's own reaction to such tags: only the clone check runs, with a SkipTestWarning for the rest
    with pytest.warns(SkipTestWarning, match="Can't test estimator"):
        results = check_estimator(cls(**FAST), on_fail=None)
    assert [(r["check_name"], r["status"]) for r in results] == [("check_estimator_cloneable", "passed")]


def test_errors_are_value_errors():
    for err in (DataError("bad data"), ConfigError("bad value")):
        assert isinstance(err, ValueError) and isinstance(err, TransferkitError) and err.exit_code == 2


def test_cli_still_prints_data_errors_as_one_line(tmp_path, capsys):
    from transferkit.cli.main import main

    rc = main(["fit", "--train", str(tmp_path / "missing"), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("transferkit: error: ") and "missing" in err and "\n" not in err


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    X = rng.random((24, 6, 6)).astype(np.float32)
    y = np.repeat([0, 1, 2], 8)
    X[y == 1] += 1.0
    X[y == 2] += 2.0
    return X / 3.0, y


@pytest.fixture(scope="module")
def fitted(images):
    X, y = images
    return TransferClassifier(**FAST).fit(X, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_raise_value_error(images, fitted, bad):
    X, y = images
    X = X.copy()
    X[3, 2, 1] = bad
    word = "NaN" if np.isnan(bad) else "inf"
    with pytest.raises(ValueError, match=f"X contains .*{word}"):
        TransferClassifier(**FAST).fit(X, y)
    with pytest.raises(ValueError, match=f"X contains .*{word}"):
        fitted.predict(X)
    with pytest.raises(ValueError, match=f"X contains .*{word}"):
        TransferRegressor(**FAST).fit(X, y.astype(float))


def test_continuous_y_is_not_one_class_per_value(images):
    X, _ = images
    y = np.linspace(0.0, 1.0, len(X))
    clf = TransferClassifier(**FAST)
    with pytest.raises(ValueError, match="y is continuous .*TransferRegressor"):
        clf.fit(X, y)
    assert not hasattr(clf, "classes_")
    # integral floats are class labels
    assert list(TransferClassifier(**FAST).fit(X, np.repeat([0.0, 1.0, 2.0], 8)).classes_) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("missing", [np.nan, None, float("nan")])
def test_missing_label_raises_rather_than_becoming_a_class(images, missing):
    X, _ = images
    y = ["cat", "dog", "bird"] * 8
    y[5] = missing
    with pytest.raises(ValueError, match=r"y has 1 missing or infinite value\(s\) .* at index 5"):
        TransferClassifier(**FAST).fit(X, y)


def test_bad_targets(images):
    X, y = images
    with pytest.raises(ValueError, match="X has 24 samples but y has 23"):
        TransferClassifier(**FAST).fit(X, y[:-1])
    with pytest.raises(ValueError, match="X has 24 samples but y has 25"):
        TransferRegressor(**FAST).fit(X, np.arange(25.0))
    with pytest.raises(ValueError, match=r"y has shape \(24, 2\)"):
        TransferClassifier(**FAST).fit(X, np.stack([y, y], 1))
    with pytest.raises(ValueError, match="only one class"):
        TransferClassifier(**FAST).fit(X, np.zeros(24))
    with pytest.raises(ValueError, match="missing or infinite"):
        TransferRegressor(**FAST).fit(X, np.r_[np.inf, np.arange(23.0)])
    with pytest.raises(ValueError, match="non-numeric value 'big'"):
        TransferRegressor(**FAST).fit(X, ["big"] + [1.0] * 23)
    with pytest.raises(ValueError, match="requires y to be passed"):
        TransferClassifier(**FAST).fit(X, None)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        col = TransferClassifier(**FAST).fit(X, y[:, None])
    np.testing.assert_array_equal(col.classes_, [0, 1, 2])


def test_empty_and_zero_sized_X(images):
    X, y = images
    cases = [(X[:0], y[:0], "0 samples"), (np.zeros((24, 4, 0)), y, "side of 0 pixels"), ([], [], "X is empty"),
             (X[:1], y[:1], "X has 1 sample"), (X.reshape(24, -1), y, r"X has shape \(24, 36\); .*Reshape")]
    for bad_X, bad_y, msg in cases:
        with pytest.raises(ValueError, match=msg):
            TransferClassifier(**FAST).fit(bad_X, bad_y)


def test_predict_before_fit_raises_not_fitted(images):
    X, _ = images
    for est, method in ((TransferClassifier(**FAST), "predict"), (TransferClassifier(**FAST), "predict_proba"),
                        (TransferRegressor(**FAST), "predict")):
        with pytest.raises(NotFittedError):
            getattr(est, method)(X)
        with pytest.raises(NotFittedError):  # before any input validation, even for bad X
            getattr(est, method)(np.full((2, 3), np.nan))


def test_no_feature_count_and_images_of_another_size(fitted, images):
    X, _ = images
    assert not hasattr(fitted, "n_features_in_")
    bigger = np.kron(X, np.ones((1, 2, 2), dtype=X.dtype))  # 12 x 12 images: resized like any input
    np.testing.assert_array_equal(fitted.predict(bigger), fitted.predict(X))


def test_array_likes_are_images(fitted, images):
    X, _ = images
    expected = fitted.predict(X)
    np.testing.assert_array_equal(fitted.predict(X.tolist()), expected)
    np.testing.assert_array_equal(fitted.predict(X.astype(object)), expected)
    with pytest.raises(ValueError, match="cannot be read as an image array"):
        fitted.predict([X[0], X[1, :3]])
    with pytest.raises(ValueError, match="dtype <U1; image pixels must be numbers"):
        fitted.predict(np.full((3, 6, 6), "a"))
    with pytest.raises(TypeError, match="non-numeric pixel"):
        bad = X.astype(object)
        bad[0, 0, 0] = {"a": 1}
        fitted.predict(bad)


def test_row_order_and_subsets(fitted, images):
    """What the two float32-tolerance checks test, at float32 precision; class predictions exactly."""
    X, _ = images
    perm = np.random.default_rng(1).permutation(len(X))
    proba = fitted.predict_proba(X)
    np.testing.assert_allclose(fitted.predict_proba(X[perm]), proba[perm], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([fitted.predict_proba(X[i:i + 5]) for i in range(0, 24, 5)]), proba,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fitted.predict(X[perm]), fitted.predict(X)[perm])


def test_classifier_train_consistency():
    """check_classifiers_train's assertions after the feature-count one it cannot pass (blobs as 1 x 2 images)."""
    from sklearn.datasets import make_blobs
    from sklearn.preprocessing import StandardScaler

    X, y = make_blobs(n_samples=300, random_state=0)
    X = rows_as_images(StandardScaler().fit_transform(X))
    clf = TransferClassifier(**FAST).fit(X, y)
    pred = clf.predict(X)
    assert pred.shape == (300,) and (pred == y).mean() > 0.83
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 3)
    np.testing.assert_array_equal(proba.argmax(1), pred)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
