"""Linear probe: the on-disk feature cache, the probe head, regression with a ridge probe."""
from __future__ import annotations

import json

import numpy as np
import pytest

from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.engine.loop import predict_outputs
from transferkit.features.extract import extract_features
from transferkit.features.inputs import Inputs
from transferkit.pipeline import fit
from transferkit.strategies import FeatureCache
from transferkit.strategies.linear_probe import fit_probe, fold_into_linear
from tests.helpers import assert_png


@pytest.fixture(scope="module")
def digits_small(digits):
    X, y = digits
    return from_arrays(X[:150], y[:150]), from_arrays(X[150:190], y[150:190])


def test_feature_cache_second_fit_hits(tmp_path, digits_small):
    train, holdout = digits_small
    cache = FeatureCache(tmp_path / "cache")
    cfg = FitConfig(backbone="packaged:efficientnet_lite0", strategy="linear-probe", image_size=32, seed=0,
                    probe_grid=[0.1, 1.0])
    r1 = fit(cfg, train=train, save=False, progress=False, cache=cache)
    assert (cache.hits, cache.misses) == (0, 3)  # train, validation and test features computed
    files = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 3
    assert not list((tmp_path / "cache").glob("*.tmp"))

    r2 = fit(cfg, train=train, save=False, progress=False, cache=cache)
    assert (cache.hits, cache.misses) == (3, 3)
    assert r2.details["cache_hits"] == 3 and r2.details["cache_misses"] == 3
    assert sorted((tmp_path / "cache").glob("*.npy")) == files

    inputs = Inputs(holdout, r1.model.backbone)
    np.testing.assert_array_equal(predict_outputs(r1.model, inputs), predict_outputs(r2.model, inputs))
    assert r1.metrics["macro_f1"] == r2.metrics["macro_f1"]
    assert r1.metrics["accuracy"] > 0.6  # 10 classes (chance 0.1), 8x8 digits upsampled to 32 px

    # a changed preprocessing (image size) is a different cache entry
    cfg48 = FitConfig(backbone="packaged:efficientnet_lite0", strategy="linear-probe", image_size=48, seed=0,
                      probe_grid=[1.0])
    fit(cfg48, train=train, save=False, progress=False, cache=cache)
    assert (cache.hits, cache.misses) == (3, 6)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 6


def test_probe_metrics_from_cached_features_equal_a_forward_pass(tmp_path, digits_small):
    """The linear probe scores validation/test from cached features; a real forward must agree."""
    from transferkit.evaluation.evaluate import evaluate_model
    from transferkit.pipeline import encode_targets, load_splits

    train, _ = digits_small
    cfg = FitConfig(backbone="packaged:efficientnet_lite0", strategy="linear-probe", image_size=32, seed=0,
                    probe_grid=[1.0])
    r = fit(cfg, train=train, save=False, progress=False, cache=FeatureCache(tmp_path / "c"))
    splits = load_splits(cfg.validate(), train=train)
    labels, (_, _, yte) = encode_targets(cfg, splits)
    forward = evaluate_model(r.model, Inputs(splits.test, r.model.backbone), yte, labels)
    assert forward.metrics["confusion_matrix"] == r.metrics["confusion_matrix"]
    assert abs(forward.metrics["ece"] - r.metrics["ece"]) < 1e-4

def test_cache_key_depends_on_preprocessing_weights_and_data(tmp_path, digits, lite0):
    from transferkit.backbones import create_backbone

    X, y = digits
    cache = FeatureCache(tmp_path)
    ds = from_arrays(X[:20], y[:20])
    k32 = cache.key(lite0, Inputs(ds, lite0))
    assert cache.key(lite0, Inputs(from_arrays(X[:20], y[:20]), lite0)) == k32
    b48 = create_backbone("packaged:efficientnet_lite0", image_size=48)
    assert cache.key(b48, Inputs(ds, b48)) != k32
    assert cache.key(lite0, Inputs(from_arrays(X[1:21], y[1:21]), lite0)) != k32
    assert cache.key(lite0, Inputs(ds, lite0), kind="source_logits") != k32
    random_weights = create_backbone("packaged:efficientnet_lite0", image_size=32, pretrained=False)
    assert cache.key(random_weights, Inputs(ds, random_weights)) != k32


def test_cache_key_depends_on_text_pooling(tmp_path):
    from transferkit.backbones import create_backbone

    cache = FeatureCache(tmp_path)
    ds = from_arrays(["free money now", "meeting at noon"], ["spam", "ham"])
    mean, cls = (create_backbone("packaged:minilm-l6", max_length=16, pooling=p) for p in ("mean", "cls"))
    assert cache.key(mean, Inputs(ds, mean)) != cache.key(cls, Inputs(ds, cls))

def test_cache_returns_the_extracted_features_and_repairs_corrupt_entries(tmp_path, digits, lite0):
    X, y = digits
    cache = FeatureCache(tmp_path)
    inputs = Inputs(from_arrays(X[:24], y[:24]), lite0)
    fresh = extract_features(lite0, inputs, batch_size=8, progress=False)
    assert fresh.shape == (24, lite0.meta.feature_dim)
    a = cache.get_or_compute(lite0, inputs, batch_size=8, progress=False)
    np.testing.assert_allclose(a, fresh, rtol=1e-5, atol=1e-5)
    (path,) = tmp_path.glob("*.npy")
    np.testing.assert_array_equal(np.load(path), a)
    path.write_bytes(b"not a numpy file")
    b = cache.get_or_compute(lite0, inputs, batch_size=8, progress=False)
    assert (cache.hits, cache.misses) == (0, 2)
    np.testing.assert_allclose(b, fresh, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.load(path), b)
    c = cache.get_or_compute(lite0, inputs, batch_size=8, progress=False)
    assert cache.hits == 1
    np.testing.assert_array_equal(b, c)

def test_disabled_cache_writes_nothing(tmp_path, digits, lite0):
    X, y = digits
    cache = FeatureCache(tmp_path / "off", enabled=False)
    inputs = Inputs(from_arrays(X[:8], y[:8]), lite0)
    cache.get_or_compute(lite0, inputs, progress=False)
    cache.get_or_compute(lite0, inputs, progress=False)
    assert cache.misses == 2 and cache.hits == 0
    assert not (tmp_path / "off").exists()

def test_fit_probe_chooses_C_on_validation_and_folds_exactly():
    import torch
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=300, n_features=12, n_informative=6, n_classes=3, random_state=0)
    X = X * 5 + 3  # not standardised: the fold must undo the scaler
    coef, icpt, scaler, rep = fit_probe(X[:200], y[:200], X[200:], y[200:], "classification",
                                        [0.001, 0.1, 10.0], n_out=3)
    assert rep["chosen_C"] in (0.001, 0.1, 10.0)
    assert set(rep["val_scores"]) == {"0.001", "0.1", "10"}
    assert rep["val_scores"][f"{rep['chosen_C']:g}"] == max(rep["val_scores"].values())
    head = torch.nn.Linear(12, 3)
    fold_into_linear(head, coef, icpt, scaler)
    with torch.no_grad():
        folded = head(torch.as_tensor(X[200:], dtype=torch.float32)).numpy()
    direct = scaler.transform(X[200:]) @ coef.T + icpt
    np.testing.assert_allclose(folded, direct, rtol=1e-4, atol=1e-3)
    assert (folded.argmax(1) == y[200:]).mean() > 0.6

def test_binary_probe_maps_to_two_logits():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-2, 1, (40, 4)), rng.normal(2, 1, (40, 4))]
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    coef, icpt, scaler, _ = fit_probe(X[::2], y[::2], X[1::2], y[1::2], "classification", [1.0], n_out=2)
    assert coef.shape == (2, 4)
    out = scaler.transform(X[1::2]) @ coef.T + icpt
    assert (out.argmax(1) == y[1::2]).mean() > 0.9

@pytest.fixture(scope="module")
def rotated_digits(mnist):
    """Regression: 180 real MNIST digits (0, 1 and 7) rotated by a known angle in [-70, 70] degrees."""
    from PIL import Image

    from tests.helpers import mnist_subset

    x, _ = mnist_subset(mnist, [0, 1, 7], 60, offset=30)
    angles = np.random.default_rng(0).uniform(-70.0, 70.0, len(x))
    rot = np.stack([np.asarray(Image.fromarray(im).rotate(float(a), resample=Image.Resampling.BILINEAR))
                    for im, a in zip(x, angles)])
    return rot, angles

def test_regression_linear_probe_rotation_angle(tmp_path, rotated_digits):
    """Predict the rotation angle of rotated MNIST digits from frozen EfficientNet-Lite0 features."""
    X, angles = rotated_digits
    cfg = FitConfig(backbone="packaged:efficientnet_lite0", strategy="linear-probe", task="regression",
                    image_size=32, runs_dir=str(tmp_path), name="rotation", seed=0)
    r = fit(cfg, train=from_arrays(X, angles), progress=False)
    assert set(r.metrics) >= {"mae", "rmse", "r2"}
    assert r.metrics["r2"] > 0.0, r.metrics
    assert r.metrics["rmse"] >= r.metrics["mae"] > 0
    assert r.metrics["rmse"] < np.std(angles)
    run = r.run_dir
    assert_png(run / "pred_vs_true.png")
    assert not (run / "confusion_matrix.png").exists()
    labels = json.loads((run / "labels.json").read_text())
    assert labels["task"] == "regression"
    assert labels["target_std"] > 10  # degrees, not standardised
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["r2"] == pytest.approx(r.metrics["r2"])
    assert "pred_vs_true.png" in (run / "report.md").read_text()
    # the saved model predicts in degrees
    from transferkit.runs import load_run

    loaded = load_run(run)
    out = predict_outputs(loaded.model, Inputs(from_arrays(X[:20], angles[:20]), loaded.model.backbone))[:, 0]
    pred = out * float(loaded.model.target_std) + float(loaded.model.target_mean)
    assert np.corrcoef(pred, angles[:20])[0, 1] > 0.2
    assert np.abs(pred).max() < 150
