"""scikit-learn compatible estimators: cross-validation, params / clone, save / load, regression, texts."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from transferkit import TransferClassifier, TransferRegressor
from transferkit.errors import ConfigError

FAST = {"probe_grid": [0.01, 0.1, 1.0], "min_steps": 0}


@pytest.fixture(scope="module")
def digits_xy(digits):
    X, y = digits
    idx = np.random.default_rng(5).permutation(len(y))
    return X[idx[:150]], y[idx[:150]], X[idx[150:200]], y[idx[150:200]]


@pytest.fixture(scope="module")
def fitted(digits_xy):
    X, y, _, _ = digits_xy
    return TransferClassifier(image_size=32, options=dict(FAST)).fit(X, y)


def test_cross_val_score_with_digits(digits_xy):
    X, y, _, _ = digits_xy
    clf = TransferClassifier(backbone="packaged:efficientnet_lite0", strategy="linear-probe", image_size=32,
                             options=dict(FAST))
    scores = cross_val_score(clf, X, y, cv=2)
    assert scores.shape == (2,)
    assert (scores > 0.3).all(), scores  # ten classes: chance is 0.1
    assert not hasattr(clf, "model_"), "cross_val_score fits clones, not the estimator itself"


def test_get_set_params_and_clone():
    clf = TransferClassifier(image_size=32, epochs=2, options={"min_steps": 0})
    params = clf.get_params()
    assert params["image_size"] == 32 and params["epochs"] == 2 and params["backbone"] == "packaged:efficientnet_lite0"
    assert clf.set_params(epochs=4, lr=0.01) is clf
    assert clf.epochs == 4 and clf.lr == 0.01
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == clf.get_params()
    with pytest.raises(ValueError):
        clf.set_params(no_such_param=1)


def test_bad_params_are_reported_at_fit(digits_xy):
    X, y, _, _ = digits_xy
    with pytest.raises(ConfigError, match="'epochs' parameter"):
        TransferClassifier(epochs=0).fit(X, y)
    with pytest.raises(ConfigError, match="Unknown key 'not_an_option'"):
        TransferClassifier(options={"not_an_option": 1}).fit(X, y)


def test_fitted_attributes_and_predictions(fitted, digits_xy):
    _, _, Xh, yh = digits_xy
    np.testing.assert_array_equal(fitted.classes_, np.arange(10))
    proba = fitted.predict_proba(Xh)
    assert proba.shape == (len(Xh), 10)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    pred = fitted.predict(Xh)
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(1)])
    assert fitted.score(Xh, yh) > 0.4
    assert fitted.value_max_ == 16.0 and "macro_f1" in fitted.val_metrics_


def test_predict_before_fit_raises():
    from sklearn.exceptions import NotFittedError

    for method in ("predict", "predict_proba"):
        with pytest.raises(NotFittedError):
            getattr(TransferClassifier(), method)(np.zeros((2, 8, 8)))
    with pytest.raises(NotFittedError):
        TransferRegressor().predict(np.zeros((2, 8, 8)))


def test_save_load_round_trip(fitted, digits_xy, tmp_path):
    _, _, Xh, _ = digits_xy
    path = fitted.save(tmp_path / "clf")
    assert (path / "model.safetensors").exists() and (path / "run.json").exists()
    loaded = TransferClassifier.load(path)
    assert loaded.get_params()["image_size"] == 32 and loaded.backbone == fitted.backbone
    np.testing.assert_allclose(loaded.predict_proba(Xh), fitted.predict_proba(Xh), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    # value_max (16 for digits) survives the round trip: a raw 0..16 array is scaled the same way
    assert loaded.value_max_ == 16.0
    with pytest.raises(ConfigError, match="already exists"):
        fitted.save(tmp_path / "clf")
    fitted.save(tmp_path / "clf", overwrite=True)


@pytest.fixture(scope="module")
def rotation_260(mnist):
    from tests.conftest import rotated_mnist

    return rotated_mnist(mnist, n=260, size=64, seed=0)


def test_regressor_fit_predict_score_save_load(rotation_260, tmp_path):
    from sklearn.metrics import r2_score

    X, angles = rotation_260
    reg = TransferRegressor(image_size=32, options=dict(FAST))
    assert reg.fit(X[:200], angles[:200]) is reg
    pred = reg.predict(X[200:])
    assert pred.shape == (60,) and pred.dtype.kind == "f" and np.isfinite(pred).all()
    assert reg.score(X[200:], angles[200:]) == pytest.approx(r2_score(angles[200:], pred))
    # predictions come back in degrees (the target is standardised only internally)
    train_angles = angles[reg_train_idx(reg, angles)]
    assert float(reg.model_.target_std) == pytest.approx(np.std(train_angles), rel=1e-5)
    assert float(reg.model_.target_mean) == pytest.approx(np.mean(train_angles), abs=1e-4)
    assert np.std(pred) > 5
    assert not hasattr(reg, "classes_")
    loaded = TransferRegressor.load(reg.save(tmp_path / "reg"))
    np.testing.assert_allclose(loaded.predict(X[200:]), pred, rtol=1e-5, atol=1e-3)


def reg_train_idx(reg, angles):
    """The training rows of a fitted regressor's seeded split (validation rows removed)."""
    from transferkit.data import stratified_split

    tr, _ = stratified_split(angles[:200], (reg.val_fraction,), reg.seed, stratify=False)
    return tr


def test_regressor_predictions_stay_in_a_sane_range(rotation_260):
    """Digits rotated by -60..60 degrees: a linear probe on frozen EfficientNet-Lite0 features (64 px) must not
    predict angles far outside that range for held-out digits, and must beat predicting the mean.

    Exposes the linear probe's standardisation of near-constant features (fit_probe: StandardScaler on ReLU6
    features that are ~0 for almost every training image -> scale_ ~1e-4 -> huge folded weights)."""
    X, angles = rotation_260
    reg = TransferRegressor(image_size=64, options=dict(FAST)).fit(X[:200], angles[:200])
    pred = reg.predict(X[200:])
    assert np.abs(pred).max() < 2 * np.abs(angles).max(), f"absurd angle predicted: {np.abs(pred).max():.0f} deg"
    assert reg.score(X[200:], angles[200:]) > 0.0


def test_classifier_on_list_of_texts(spam_records):
    texts = [f"{r['subject']}\n{r['body']}" for r in spam_records]
    labels = [r["label"] for r in spam_records]
    clf = TransferClassifier(backbone="packaged:minilm-l6", max_length=32, options=dict(FAST))
    clf.fit(texts[:120], labels[:120])
    assert list(clf.classes_) == ["ham", "spam"]
    pred = clf.predict(texts[120:])
    assert set(pred) <= {"ham", "spam"} and len(pred) == 40
    assert clf.score(texts[120:], labels[120:]) > 0.7  # balanced: chance is 0.5


def test_explicit_validation_data_is_used(digits_xy):
    X, y, Xh, yh = digits_xy
    clf = TransferClassifier(backbone="scratch:cnn", image_size=16, options=dict(FAST)).fit(X, y, X_val=Xh, y_val=yh)
    # validation metrics are computed on the 50 given examples
    assert clf.val_metrics_["n"] == len(Xh)
