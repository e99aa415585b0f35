"""Metrics on small cases whose answers are known by hand; plots are real PNGs; the run report links them."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_png, markdown_images
from transferkit.evaluation.metrics import (classification_metrics, expected_calibration_error, headline,
                                            regression_metrics, softmax)
from transferkit.evaluation.plots import plot_confusion, plot_learning_curve, plot_pred_vs_true


def _probs_with_confidence(pred: np.ndarray, conf: float, n_classes: int) -> np.ndarray:
    """Rows whose arg-max is ``pred`` with probability ``conf``; the rest spread evenly."""
    p = np.full((len(pred), n_classes), (1.0 - conf) / (n_classes - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_softmax_rows_sum_to_one_and_are_shift_invariant():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]])
    p = softmax(logits)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_allclose(softmax(logits + 50.0), p)
    assert np.isfinite(p).all() and p[1, 0] == pytest.approx(0.5)


def test_ece_is_zero_when_confidence_matches_accuracy():
    y = np.zeros(10, dtype=int)
    pred = np.array([0] * 8 + [1] * 2)  # 80 % correct ...
    probs = _probs_with_confidence(pred, 0.8, 2)  # ... at 80 % confidence
    assert expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-12)
    # one-hot and always right: also perfectly calibrated
    assert expected_calibration_error(np.eye(3)[[0, 1, 2, 1]], np.array([0, 1, 2, 1])) == pytest.approx(0.0)


def test_ece_is_positive_for_overconfident_predictions():
    y = np.zeros(10, dtype=int)
    pred = np.array([0] * 5 + [1] * 5)  # 50 % correct at 99 % confidence
    probs = _probs_with_confidence(pred, 0.99, 2)
    ece = expected_calibration_error(probs, y)
    assert ece == pytest.approx(0.49, abs=1e-9)
    # less over-confidence, smaller error
    assert expected_calibration_error(_probs_with_confidence(pred, 0.7, 2), y) < ece


def test_classification_metrics_by_hand():
    classes = ["cat", "dog", "eel"]
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 1, 0])
    m = classification_metrics(y, np.eye(3)[pred], classes)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert {c: v["support"] for c, v in m["per_class"].items()} == {"cat": 3, "dog": 2, "eel": 1}
    cat = m["per_class"]["cat"]
    assert cat["precision"] == pytest.approx(2 / 3) and cat["recall"] == pytest.approx(2 / 3)
    dog = m["per_class"]["dog"]
    assert dog["precision"] == pytest.approx(2 / 3) and dog["recall"] == pytest.approx(1.0)
    assert dog["f1"] == pytest.approx(0.8)
    assert m["per_class"]["eel"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.8 + 0.0) / 6)
    assert m["ece"] == pytest.approx(1 - 4 / 6)  # one-hot probabilities: confidence 1, accuracy 4/6
    assert headline(m, "classification") == ("macro_f1", m["macro_f1"])


def test_classification_metrics_keep_classes_absent_from_the_data():
    """A class never seen in y nor predicted still gets a row and a confusion-matrix column."""
    m = classification_metrics(np.array([0, 1]), np.eye(3)[[0, 1]], ["a", "b", "c"])
    assert len(m["confusion_matrix"]) == 3 and all(len(r) == 3 for r in m["confusion_matrix"])
    assert m["per_class"]["c"]["support"] == 0
    assert m["accuracy"] == 1.0


def test_regression_metrics_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.0, 2.0, 3.0, 6.0])
    m = regression_metrics(y, pred)
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(1.0)
    assert m["r2"] == pytest.approx(1 - 4 / 5)
    assert regression_metrics(y, y)["r2"] == pytest.approx(1.0)
    assert regression_metrics(y, np.full(4, y.mean()))["r2"] == pytest.approx(0.0)
    assert headline(m, "regression") == ("r2", m["r2"])


def test_plots_are_written_as_png(tmp_path):
    cm = [[5, 1, 0], [2, 3, 1], [0, 0, 6]]
    assert_png(plot_confusion(cm, ["a", "b", "c"], tmp_path / "cm.png"))
    many = np.diag(np.arange(1, 31)).tolist()  # 30 classes: no per-cell text, rotated ticks
    assert_png(plot_confusion(many, list(range(30)), tmp_path / "cm30.png"))
    epochs = [{"epoch": i, "train_loss": 1.0 / i, "val_metric": 0.5 + 0.1 * i} for i in range(1, 4)]
    assert_png(plot_learning_curve(epochs, tmp_path / "lc.png", "macro-F1"))
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    assert_png(plot_pred_vs_true(y, y + rng.normal(scale=0.1, size=50), tmp_path / "pvt.png"))


@pytest.fixture(scope="module")
def fine_tune_run(tmp_path_factory, digits150):
    """A real fine-tune run (scratch CNN on 150 digits, two epochs) with its report."""
    from transferkit.config import FitConfig
    from transferkit.data import from_arrays
    from transferkit.pipeline import fit

    X, y = digits150
    cfg = FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="fine-tune", image_size=16, epochs=2, min_steps=0,
                    runs_dir=str(tmp_path_factory.mktemp("runs")), name="report-ft"))
    return fit(cfg, train=from_arrays(X, y), progress=False)


def test_run_report_links_existing_pngs_and_states_metrics(fine_tune_run):
    run = fine_tune_run.run_dir
    md = (run / "report.md").read_text(encoding="utf-8")
    images = markdown_images(md)
    assert "confusion_matrix.png" in images and "learning_curve.png" in images
    for name in images:
        assert_png(run / name)
    # the table shows the test metrics that fit returned
    assert f"| accuracy | {fine_tune_run.metrics['accuracy']:.4f} |" in md
    assert f"| macro_f1 | {fine_tune_run.metrics['macro_f1']:.4f} |" in md
    # one per-class row per digit, with the test support
    for c, v in fine_tune_run.metrics["per_class"].items():
        assert f"| {c} | " in md and f" | {v['support']} |" in md
    assert "## Reproduce" in md and "report-ft/config.yaml" in md
    assert f"Best epoch {fine_tune_run.details['best_epoch']}" in md


def test_linear_probe_report_describes_probe(tmp_path, digits150):
    from transferkit.config import FitConfig
    from transferkit.data import from_arrays
    from transferkit.pipeline import fit

    X, y = digits150
    cfg = FitConfig(backbone="scratch:cnn", strategy="linear-probe", image_size=16, probe_grid=[0.1, 1.0],
                    runs_dir=str(tmp_path), name="lp")
    r = fit(cfg, train=from_arrays(X, y), progress=False)
    md = (r.run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Linear probe" in md and f"C = {r.details['chosen_C']:g}" in md
    assert "learning_curve.png" not in md and not (r.run_dir / "learning_curve.png").exists()
    assert_png(r.run_dir / "confusion_matrix.png")
