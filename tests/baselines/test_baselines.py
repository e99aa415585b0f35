"""Classical baselines as ordinary models: a fitted featuriser backbone + an nn.Linear head, saved and loaded like
any run; its outputs equal scikit-learn's decision function."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import cli, save_png_folder
from transferkit.backbones import create_backbone
from transferkit.baselines import PixelFeaturiser, TfidfFeaturiser, fit_classical, make_vectorizer
from transferkit.config import FitConfig
from transferkit.data import LabelMap, from_arrays, stratified_split
from transferkit.engine.loop import predict_outputs
from transferkit.errors import ConfigError, DataError
from transferkit.features import Inputs
from transferkit.pipeline import fit, load_splits
from transferkit.runs import load_run
from transferkit.runs.evaluate import evaluate_run
from transferkit.runs.predict import predict_dataset


def _split(ds, seed=0, stratify=True):
    tr, va, te = stratified_split(ds.y, (0.2, 0.2), seed, stratify)
    parts = [ds.subset(i) for i in (tr, va, te)]
    if not stratify:
        return parts, [p.y for p in parts], None
    lm = LabelMap.fit(ds.y[tr])
    return parts, [lm.encode(p.y) for p in parts], lm


def _model_outputs(model, ds):
    return predict_outputs(model, Inputs(ds, model.backbone))


@pytest.fixture(scope="module")
def digit_parts(digits):
    X, y = digits
    idx = np.random.default_rng(0).permutation(len(y))[:400]
    return _split(from_arrays(X[idx], y[idx]))


@pytest.fixture(scope="module")
def spam_ds(spam_records):
    texts = [f"{r['subject']}\n{r['body']}" for r in spam_records]
    return from_arrays(texts, np.asarray([r["label"] for r in spam_records], dtype=object))


def test_pixel_model_outputs_equal_the_decision_function(digit_parts):
    (train, val, test), (ytr, yva, _), lm = digit_parts
    m = fit_classical(train, ytr, val, yva, "classification", len(lm), seed=0)
    model = m.to_model()
    assert isinstance(model.backbone, PixelFeaturiser) and isinstance(model.head, torch.nn.Linear)
    meta = model.backbone.meta
    assert (meta.spec, meta.source, meta.pretrained, meta.input_size, meta.feature_dim) == \
        ("classical:pixels", "classical", False, 8, 3 * 8 * 8)
    dec = m.model.decision_function(m.sklearn.transform(test))
    out = _model_outputs(model, test)
    np.testing.assert_allclose(out, dec, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(m.outputs(test), dec)  # the fitting path is scikit-learn's own


def test_tfidf_featuriser_equals_the_vectoriser(spam_ds):
    vec = make_vectorizer().fit(spam_ds.inputs[:100])
    f = TfidfFeaturiser.from_vectorizer(vec)
    x = f(Inputs(spam_ds, f).batch(np.arange(100, 160), texts=False)).numpy()
    ref = vec.transform(spam_ds.inputs[100:160]).toarray()
    np.testing.assert_allclose(x, ref, atol=1e-6)
    assert f.meta.feature_dim == len(vec.vocabulary_) and f.meta.modality == "text"
    np.testing.assert_allclose(f.encode(["", "xqzjwv vwqzxjk"]).numpy(), 0.0)  # no known term: a zero row


def test_tfidf_model_outputs_equal_the_binary_decision_function(spam_ds):
    (train, val, test), (ytr, yva, _), lm = _split(spam_ds)
    m = fit_classical(train, ytr, val, yva, "classification", len(lm), seed=0)
    model = m.to_model()
    dec = m.model.decision_function(m.vectorizer.transform(test.inputs))  # one column for two classes
    out = _model_outputs(model, test)
    np.testing.assert_allclose(out[:, 1] - out[:, 0], dec, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, m.outputs(test), rtol=1e-5, atol=1e-5)


def test_ridge_model_outputs_equal_the_prediction(rotation_task):
    X, angles = rotation_task
    ds = from_arrays(X, (angles - angles.mean()) / angles.std())
    (train, val, test), (ytr, yva, _), _ = _split(ds, stratify=False)
    m = fit_classical(train, ytr, val, yva, "regression", 1, seed=0)
    assert m.details["model"] == "ridge"
    pred = m.model.predict(m.sklearn.transform(test))
    np.testing.assert_allclose(_model_outputs(m.to_model(), test)[:, 0], pred, rtol=1e-5, atol=1e-5)


def test_classical_specs_build_unfitted_featurisers():
    assert isinstance(create_backbone("classical:pixels", image_size=16), PixelFeaturiser)
    f = create_backbone("classical:tfidf", vocab_size=7)
    assert isinstance(f, TfidfFeaturiser) and f.meta.feature_dim == 7
    with pytest.raises(ConfigError, match="Did you mean 'pixels'"):
        create_backbone("classical:pixel")
    with pytest.raises(ValueError, match="vocabulary"):
        f.set_vocabulary({"a": 0})


def _check_run(r, splits):
    """save -> load_run -> predict equals the in-memory model's outputs (and the fit's own, to float32)."""
    run = load_run(r.run_dir)
    assert run.model.backbone.meta.spec == r.model.backbone.meta.spec
    loaded = _model_outputs(run.model, splits.test)
    np.testing.assert_array_equal(loaded, _model_outputs(r.model, splits.test))
    classes = np.asarray(run.labels["classes"])
    acc = float((classes[loaded.argmax(1)] == np.asarray(splits.test.y)).mean())
    assert acc == pytest.approx(r.metrics["accuracy"], abs=1e-9)
    return run


def test_classical_image_run_saves_loads_predicts_and_evaluates(digits, tmp_path):
    X, y = digits
    folder = save_png_folder(tmp_path / "digits", (X[:200] * 15).astype(np.uint8), y[:200])
    cfg = FitConfig(strategy="classical", train=str(folder), runs_dir=str(tmp_path / "runs"), name="pix",
                    num_threads=1)
    r = fit(cfg, progress=False)
    assert r.model.backbone.meta.spec == "classical:pixels" and r.metrics["accuracy"] > 0.6
    run = _check_run(r, load_splits(cfg))
    assert run.config.backbone == "classical:pixels"  # fit chose the featuriser for the data
    rows = predict_dataset(run, load_splits(cfg).test)
    assert len(rows) == len(load_splits(cfg).test) and {"label", "probability"} <= set(rows[0])
    metrics, report = evaluate_run(run, str(folder), tmp_path / "eval")
    assert metrics["accuracy"] > 0.6 and report.exists()
    md = (r.run_dir / "report.md").read_text()
    assert "`classical:pixels`, no transfer" in md and "logistic regression, C =" in md


def test_classical_text_run_saves_loads_predicts_and_evaluates(spam_jsonl, tmp_path):
    cfg = FitConfig(strategy="classical", train=str(spam_jsonl), text_column="subject,body",
                    runs_dir=str(tmp_path), name="tfidf", num_threads=1)
    r = fit(cfg, progress=False)
    assert r.model.backbone.meta.spec == "classical:tfidf" and r.metrics["macro_f1"] > 0.7
    vocab = json.loads((r.run_dir / "backbone_vocabulary.json").read_text())
    assert len(vocab) == r.model.backbone.meta.feature_dim > 100
    run = _check_run(r, load_splits(cfg))
    metrics, _ = evaluate_run(run, str(spam_jsonl), tmp_path / "eval")
    assert metrics["macro_f1"] > 0.7
    texts = tmp_path / "mails.txt"
    texts.write_text("Cheap meds online, click here to claim your prize\nMeeting notes for Friday\n")
    assert cli("predict", run.path, texts, "-o", tmp_path / "pred.csv") == 0
    assert len((tmp_path / "pred.csv").read_text().strip().splitlines()) == 3


def test_cli_fit_strategy_classical_then_predict_and_evaluate(mnist_folder, tmp_path, capsys):
    assert cli("--quiet", "fit", "--train", mnist_folder, "--strategy", "classical", "--runs-dir", tmp_path,
               "--name", "c") == 0
    assert "classical on classical:pixels" in capsys.readouterr().out
    assert cli("predict", tmp_path / "c", mnist_folder, "-o", tmp_path / "p.csv") == 0
    assert cli("--quiet", "evaluate", tmp_path / "c", mnist_folder, "--out", tmp_path / "ev") == 0
    assert (tmp_path / "ev" / "metrics.json").exists()


def test_classical_refuses_a_featuriser_of_the_other_modality(spam_ds):
    with pytest.raises(DataError, match="takes images"):
        fit(FitConfig(strategy="classical", backbone="classical:pixels"), train=spam_ds, save=False,
            progress=False)
    with pytest.raises(ConfigError, match="classical:tfidf"):
        fit_classical(spam_ds, np.zeros(len(spam_ds), int), spam_ds, np.zeros(len(spam_ds), int),
                      "classification", 2, featuriser=PixelFeaturiser())


def test_load_refuses_a_tfidf_run_without_its_vocabulary(spam_ds, tmp_path):
    r = fit(FitConfig(strategy="classical", runs_dir=str(tmp_path), name="t", num_threads=1), train=spam_ds,
            progress=False)
    (r.run_dir / "backbone_vocabulary.json").unlink()
    with pytest.raises(DataError, match="backbone_vocabulary.json"):
        load_run(r.run_dir)
