"""The hybrid text head: TF-IDF and frozen embeddings in one model, block weight and C chosen on validation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import cli, one_line_error
from transferkit.data import Dataset, from_arrays
from transferkit.strategies.hybrid import fit_hybrid

WORDS = "the a meeting report budget lunch schedule project update team notes friday".split()


def _texts(rng, n, marker=None):
    out = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=8))
        if marker is not None and marker[i]:
            words.insert(int(rng.integers(0, 8)), "zqxviagra")
        out.append(" ".join(words))
    return out


def _split(n_tr, n_va, n_te, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_tr + n_va + n_te)
    return rng, y, np.split(np.arange(len(y)), [n_tr, n_tr + n_va])


def _fit(texts, feats, y, parts):
    tr, va, te = parts
    ds = Dataset("text", texts, y.astype(object))
    m = fit_hybrid(ds.subset(tr), feats[tr], y[tr], ds.subset(va), feats[va], y[va], "classification", 2)
    acc = float((m.outputs(ds.subset(te), feats[te]).argmax(1) == y[te]).mean())
    return m, acc


def test_uses_the_lexical_block_when_only_words_carry_the_label():
    rng, y, parts = _split(60, 60, 100)
    texts = _texts(rng, len(y), marker=y == 1)
    noise = rng.normal(size=(len(y), 16))
    m, acc = _fit(texts, noise, y, parts)
    from transferkit.baselines import fit_classical

    tr, va, te = parts
    ds = Dataset("text", texts, y.astype(object))
    lexical = fit_classical(ds.subset(tr), y[tr], ds.subset(va), y[va], "classification", 2)
    lexical_acc = float((lexical.outputs(ds.subset(te)).argmax(1) == y[te]).mean())
    assert acc >= 0.85 and acc >= lexical_acc - 0.03  # noise embeddings do not drag it below TF-IDF alone
    n_words = len(m.vectorizer.vocabulary_)
    coef = np.abs(m.model.coef_[0])
    assert coef[m.vectorizer.vocabulary_["zqxviagra"]] == coef[:n_words].max()


def test_uses_the_embedding_block_when_only_embeddings_carry_the_label():
    rng, y, parts = _split(60, 60, 100)
    texts = _texts(rng, len(y))  # the same vocabulary for both classes
    feats = rng.normal(size=(len(y), 16))
    feats[:, 3] += 3.0 * (2 * y - 1)
    m, acc = _fit(texts, feats, y, parts)
    assert acc >= 0.9
    # the embedding coefficients, not the word ones, carry the decision
    n_words = len(m.vectorizer.vocabulary_)
    coef = np.abs(m.model.coef_[0])
    assert coef[n_words + 3] > coef[:n_words].max()
    assert set(m.details) >= {"weight", "chosen_C", "val_scores"}


def test_rejects_mismatched_rows_and_images():
    rng, y, parts = _split(20, 20, 10)
    texts = _texts(rng, len(y), marker=y == 1)
    feats = rng.normal(size=(len(y), 4))
    m, _ = _fit(texts, feats, y, parts)
    with pytest.raises(ValueError, match="texts but"):
        m.outputs(Dataset("text", texts[:5], y[:5].astype(object)), feats[:4])
    imgs = from_arrays(rng.integers(0, 255, (10, 8, 8)).astype(np.uint8), y[:10])
    with pytest.raises(ValueError, match="needs text"):
        fit_hybrid(imgs, feats[:10], y[:10], imgs, feats[:10], y[:10], "classification", 2)


def test_compare_on_text_includes_hybrid_by_default(tmp_path, spam_jsonl):
    out = tmp_path / "study"
    rc = cli("--quiet", "compare", "--train", spam_jsonl, "--text-column", "subject,body", "--strategies",
             "classical,hybrid", "--backbones", "scratch:transformer", "--budgets", "10,all", "--seeds", "0",
             "--max-length", "32", "--out", out)
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "hybrid (scratch:transformer)" in summary["series"]
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("hybrid__*.json")]
    assert len(cells) == 2 and all(0.0 <= c["value"] <= 1.0 for c in cells)


def test_compare_refuses_hybrid_on_images(tmp_path, digits, capsys):
    from tests.helpers import save_png_folder

    X, y = digits
    folder = save_png_folder(tmp_path / "img", X[:40], y[:40])
    rc = cli("--quiet", "compare", "--train", folder, "--strategies", "classical,hybrid", "--budgets", "all",
             "--seeds", "0", "--out", tmp_path / "s")
    assert rc == 2
    assert "needs text data" in one_line_error(capsys.readouterr().err)


def test_fit_hybrid_run_saves_and_predicts_the_same_outputs(tmp_path, spam_jsonl):
    from transferkit.config import FitConfig
    from transferkit.engine.loop import predict_outputs
    from transferkit.features.inputs import Inputs
    from transferkit.pipeline import fit
    from transferkit.runs import load_run

    cfg = FitConfig(backbone="scratch:transformer", strategy="hybrid", train=str(spam_jsonl),
                    text_column="subject,body", max_length=32, runs_dir=str(tmp_path), name="hyb")
    r = fit(cfg, progress=False)
    assert r.metrics["macro_f1"] > 0.7
    run = load_run(r.run_dir)
    assert run.model.lexical is not None and len(run.model.lexical.vocabulary) > 100
    assert (r.run_dir / "lexical_vocabulary.json").exists()
    # the folded model reproduces the strategy's own test outputs (lexical branch + embedding head)
    from transferkit.pipeline import load_splits

    splits = load_splits(cfg)
    out = predict_outputs(run.model, Inputs(splits.test, run.model.backbone))
    preds = np.asarray(run.labels["classes"])[out.argmax(1)]
    acc = float((preds == np.asarray(splits.test.y)).mean())
    assert acc == pytest.approx(r.metrics["accuracy"], abs=1e-9)
    # an engine in place of the eager backbone (what `serve --engine` uses) keeps the lexical branch
    from transferkit.features.runtimes import get_runtime

    via_engine = predict_outputs(run.model, Inputs(splits.test, run.model.backbone),
                                 runtime=get_runtime(run.model.backbone, "eager"))
    np.testing.assert_allclose(via_engine, out, atol=1e-5)
    assert rc_predict(run, tmp_path) == 0


def test_model_forward_alone_gives_the_hybrid_outputs(spam_records):
    """The lexical branch runs inside ``TransferModel.forward``: ``model(batch)`` on a text batch (which carries
    the raw texts) reproduces the strategy's own validation-chosen outputs, with no step outside the model."""
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.config import FitConfig
    from transferkit.engine.lexical import LexicalBranch
    from transferkit.features import FeatureCache, Inputs
    from transferkit.strategies import STRATEGIES, FitContext

    texts = [f"{r['subject']} {r['body'][:120]}" for r in spam_records[:90]]
    y = np.asarray([int(r["label"] == "spam") for r in spam_records[:90]])
    ds = Dataset("text", texts, y.astype(object))
    bb = create_backbone("scratch:transformer", max_length=24, seed=0)
    tr, va, te = (Inputs(ds.subset(i), bb) for i in (np.arange(50), np.arange(50, 70), np.arange(70, 90)))
    ctx = FitContext(FitConfig(backbone="scratch:transformer", strategy="hybrid", max_length=24), bb, tr, y[:50],
                     va, y[50:70], 2, cache=FeatureCache(enabled=False), progress=False, test=te)
    result = STRATEGIES.get("hybrid")(ctx)
    model = result.model
    assert isinstance(model.lexical, LexicalBranch)
    for part, inputs in (("val", va), ("test", te)):
        batch = inputs.batch(np.arange(len(inputs)))
        assert batch["texts"] == list(inputs.ds.inputs)
        with torch.inference_mode():
            out = model(batch).numpy()
        np.testing.assert_allclose(out, result.outputs[part], rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="raw texts"):
        model(va.batch(np.arange(3), texts=False))


def rc_predict(run, tmp_path):
    texts = tmp_path / "mails.txt"
    texts.write_text("Cheap meds online, click here to claim your prize\nMeeting notes for Friday\n")
    return cli("predict", run.path, texts, "-o", tmp_path / "pred.csv")
