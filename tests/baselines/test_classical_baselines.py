"""Classical (non-transfer) baselines: raw pixels / TF-IDF + logistic regression, C chosen on validation."""
from __future__ import annotations

import numpy as np

from transferkit.data import LabelMap, from_arrays, stratified_split
from transferkit.evaluation.metrics import classification_metrics, regression_metrics, softmax
from transferkit.baselines import GRID, fit_classical, pixel_size


def _split(ds, seed=0):
    tr, va, te = stratified_split(ds.y, (0.2, 0.2), seed)
    lm = LabelMap.fit(ds.y[tr])
    parts = [ds.subset(i) for i in (tr, va, te)]
    return parts, [lm.encode(p.y) for p in parts], lm


def test_pixels_baseline_on_digits_beats_chance(digits):
    X, y = digits
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))[:500]
    (train, val, test), (ytr, yva, yte), lm = _split(from_arrays(X[idx], y[idx]))
    m = fit_classical(train, ytr, val, yva, "classification", len(lm), seed=0)
    assert m.size == pixel_size(train) == 8  # 8x8 digits are not upsampled
    assert m.details["features"] == "pixels 8x8"
    assert m.details["chosen_C"] in GRID and set(m.details["val_scores"]) == {f"{c:g}" for c in GRID}
    assert m.details["val_scores"][f"{m.details['chosen_C']:g}"] == max(m.details["val_scores"].values())
    out = m.outputs(test)
    assert out.shape == (len(test), 10)
    met = classification_metrics(yte, softmax(out), lm.classes)
    assert met["accuracy"] > 0.8, met["accuracy"]  # chance is 0.1


def test_pixels_baseline_caps_resolution_at_32(mnist):
    X, y = mnist
    big = np.repeat(np.repeat(X[:4], 2, axis=1), 2, axis=2)  # 56 x 56
    assert pixel_size(from_arrays(big, y[:4])) == 32
    assert pixel_size(from_arrays(X[:4], y[:4])) == 28


def test_tfidf_baseline_on_spam_beats_chance(spam_records):
    texts = [f"{r['subject']}\n{r['body']}" for r in spam_records]
    labels = np.asarray([r["label"] for r in spam_records], dtype=object)
    (train, val, test), (ytr, yva, yte), lm = _split(from_arrays(texts, labels))
    assert train.modality == "text"
    m = fit_classical(train, ytr, val, yva, "classification", len(lm), seed=0)
    assert "tfidf" in m.details["features"]
    assert m.vectorizer.ngram_range == (1, 2)
    met = classification_metrics(yte, softmax(m.outputs(test)), lm.classes)
    assert met["accuracy"] > 0.75 and met["macro_f1"] > 0.7, met  # balanced classes: chance is 0.5


def test_binary_outputs_rank_the_predicted_class_first(spam_records):
    """For two classes the decision function is mapped onto two logits; the arg-max must match sklearn."""
    texts = [r["subject"] + " " + r["body"] for r in spam_records]
    labels = np.asarray([r["label"] for r in spam_records], dtype=object)
    (train, val, test), (ytr, yva, _), lm = _split(from_arrays(texts, labels), seed=1)
    m = fit_classical(train, ytr, val, yva, "classification", 2, seed=0)
    out = m.outputs(test)
    assert out.shape == (len(test), 2)
    np.testing.assert_array_equal(out.argmax(1), m.model.predict(m.vectorizer.transform(test.inputs)))


def test_ridge_baseline_for_regression(rotation_task):
    X, angles = rotation_task
    ds = from_arrays(X, angles)
    tr, va, te = stratified_split(ds.y, (0.2, 0.2), 0, stratify=False)
    mean, std = angles[tr].mean(), angles[tr].std()
    z = (angles - mean) / std
    m = fit_classical(ds.subset(tr), z[tr], ds.subset(va), z[va], "regression", 1, seed=0)
    out = m.outputs(ds.subset(te))
    assert out.shape == (len(te), 1)
    met = regression_metrics(angles[te], out[:, 0] * std + mean)
    assert np.isfinite(met["rmse"]) and met["rmse"] < 2 * np.std(angles)


def test_classical_is_deterministic(digits):
    X, y = digits
    (train, val, test), (ytr, yva, _), lm = _split(from_arrays(X[:300], y[:300]))
    a = fit_classical(train, ytr, val, yva, "classification", len(lm), seed=0).outputs(test)
    b = fit_classical(train, ytr, val, yva, "classification", len(lm), seed=0).outputs(test)
    np.testing.assert_array_equal(a, b)
