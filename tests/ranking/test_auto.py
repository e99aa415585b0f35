"""The `auto` rule (a pure function of a ranking and labels per class) and `auto` through fit()."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from tests.conftest import stratified_pick
from transferkit.config import FitConfig
from transferkit.data import Dataset, from_arrays
from transferkit.errors import ConfigError
from transferkit.pipeline import fit
from transferkit.ranking.auto import FEW_LABELS, MANY_LABELS, STRONG_MARGIN, decide, transfer_strategy
from transferkit.ranking.rank import BASELINE, CandidateScore, Ranking


def ranking(modality: str, backbone_score: float, baseline_score: float = 0.0, k: int = 10) -> Ranking:
    e = [CandidateScore("packaged:x", backbone_score, {"logme": backbone_score}, 1.0, 64),
         CandidateScore(BASELINE, baseline_score, {"logme": baseline_score}, 0.1, 64, True, "pixels 8x8 + LR")]
    e.sort(key=lambda c: -c.score)
    return Ranking("logme", tuple(e), 100, 10, k, modality)


@pytest.mark.parametrize("k,margin,strategy", [
    (1, 0.5, "lp-ft"), (FEW_LABELS - 1, 0.05, "lp-ft"),
    (FEW_LABELS, 0.05, "fine-tune"), (MANY_LABELS - 1, STRONG_MARGIN - 0.01, "fine-tune"),
    (FEW_LABELS, STRONG_MARGIN, "frozen-k"), (MANY_LABELS - 1, 1.0, "frozen-k"),
    (MANY_LABELS, 1.0, "fine-tune"), (1000, 0.01, "fine-tune"),
])
def test_transfer_branch(k, margin, strategy):
    c = decide(ranking("image", margin), k)
    assert (c.backbone, c.strategy) == ("packaged:x", strategy)
    assert c.margin == pytest.approx(margin) and c.labels_per_class == k
    assert c.fit_strategy == ("fine-tune" if strategy == "frozen-k" else strategy)
    assert (c.freeze_fraction > 0) == (strategy == "frozen-k")
    assert "packaged:x" in c.reason and f"{k} label" in c.reason


@pytest.mark.parametrize("modality,k,backbone,strategy", [
    ("image", 1, None, "classical"), ("image", 4, None, "classical"), ("image", 5, "scratch:cnn", "fine-tune"),
    ("text", 5, "packaged:x", "contrastive"), ("text", MANY_LABELS - 1, "packaged:x", "contrastive"),
    ("text", MANY_LABELS, "packaged:x", "hybrid"), ("text", 10000, "packaged:x", "hybrid"),
])
def test_no_transfer_branch(modality, k, backbone, strategy):
    c = decide(ranking(modality, -0.2, 0.1), k)
    assert (c.backbone, c.strategy) == (backbone, strategy)
    lead = "no clear transfer" if strategy in ("hybrid", "contrastive") else "no transfer"
    assert c.reason.startswith(f"{lead}: the classical baseline (pixels 8x8 + LR, logme 0.1000) ranks above")
    assert c.margin == pytest.approx(-0.3)


def test_fixed_backbone_only_chooses_the_strategy_and_warns():
    c = decide(ranking("image", -0.2, 0.1), 60, choose_backbone=False, backbone="packaged:x")
    assert (c.backbone, c.strategy) == ("packaged:x", "fine-tune")
    assert "backbone fixed" in c.reason and "Warning: the classical baseline ranks above" in c.reason


def test_config_accepts_auto_and_checks_candidates():
    from transferkit.pipeline import check_names

    check_names(FitConfig(backbone="auto", strategy="auto",
                          candidates="scratch:cnn, packaged:efficientnet_lite0").validate())
    with pytest.raises(ConfigError, match="source prefix"):
        check_names(FitConfig(backbone="auto", candidates="scratch:cnn,efficientnet").validate())
    with pytest.raises(ConfigError, match="classification"):
        FitConfig(backbone="auto", task="regression").validate()
    with pytest.raises(ConfigError, match="Did you mean 'auto'"):
        fit(FitConfig(strategy="atuo"), save=False, progress=False)


@pytest.fixture(scope="module")
def digits120(digits):
    X, y = digits
    idx = stratified_pick(y, 12, seed=3)
    return from_arrays(X[idx], y[idx])


def test_fit_strategy_auto_with_fixed_backbone_writes_reason(digits120, tmp_path):
    cfg = FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="auto", image_size=16, epochs=1, min_steps=0, num_threads=1,
                    runs_dir=str(tmp_path), name="auto-fixed"))
    r = fit(cfg, train=digits120, progress=False)
    auto = r.details["auto"]
    assert auto["labels_per_class"] == 8  # 12 per class, minus validation and test
    assert auto["strategy"] == transfer_strategy(8, auto["margin"])[0] == "fine-tune"
    saved = yaml.safe_load((r.run_dir / "config.yaml").read_text())
    assert saved["strategy"] == "fine-tune"  # resolved, so the run reproduces
    report = (r.run_dir / "report.md").read_text()
    assert "chosen by `auto`: backbone fixed to `scratch:cnn`" in report and "## Transferability ranking" in report


def test_fit_backbone_auto_picks_from_candidates(digits120, tmp_path):
    cfg = FitConfig(backbone="auto", strategy="linear-probe", candidates="scratch:cnn", image_size=16,
                    num_threads=1, runs_dir=str(tmp_path), name="auto-backbone")
    r = fit(cfg, train=digits120, progress=False)
    assert r.details["auto"]["backbone"] == "scratch:cnn" and r.model is not None
    assert yaml.safe_load((r.run_dir / "config.yaml").read_text())["backbone"] == "scratch:cnn"
    assert "ranks first among the backbones" in (r.run_dir / "report.md").read_text()


def test_fit_auto_on_text_falls_back_to_hybrid_when_tfidf_ranks_first(spam_records, tmp_path):
    """Short spam texts with a random-init Transformer as the only candidate: TF-IDF ranks first, so `auto`
    picks the hybrid strategy (TF-IDF + embeddings, embedding weight chosen on validation) and says why."""
    texts = [f"{r['subject']}\n{r['body']}" for r in spam_records]
    ds = Dataset("text", texts, np.asarray([r["label"] for r in spam_records], dtype=object))
    cfg = FitConfig(backbone="auto", strategy="auto", candidates="scratch:transformer", max_length=32,
                    runs_dir=str(tmp_path), name="auto-hybrid", num_threads=1)
    r = fit(cfg, train=ds, progress=False)
    auto = r.details["auto"]
    assert (auto["backbone"], auto["strategy"]) == ("scratch:transformer", "hybrid")
    assert r.metrics["accuracy"] > 0.7 and r.model is not None and r.model.lexical is not None
    report = (r.run_dir / "report.md").read_text()
    assert "chosen by `auto`: no clear transfer" in report
    assert (r.run_dir / "model.safetensors").exists()


def test_fit_auto_chooses_the_classical_baseline_for_images_with_few_labels(digits, tmp_path):
    """Two digits per class with a random-init CNN as the only candidate: pixels rank first and k < 5, so
    `auto` fits the classical baseline and says why; the run is an ordinary, loadable one."""
    from transferkit.baselines import fit_classical
    from transferkit.data import LabelMap, from_arrays
    from transferkit.evaluation.metrics import classification_metrics, softmax
    from transferkit.pipeline import load_splits
    from transferkit.runs import load_run
    from transferkit.runs.predict import predict_dataset

    X, y = digits
    idx = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(10)])
    data = from_arrays(X[idx], y[idx])
    cfg = FitConfig(backbone="auto", strategy="auto", candidates="scratch:cnn", image_size=16,
                    runs_dir=str(tmp_path), name="auto-classical", num_threads=1, val_fraction=0.3, test_fraction=0.3)
    r = fit(cfg, train=data, progress=False)
    auto = r.details["auto"]
    assert (auto["backbone"], auto["strategy"]) == (None, "classical")
    assert r.model.backbone.meta.spec == "classical:pixels" and r.model.backbone.meta.input_size == 8
    report = (r.run_dir / "report.md").read_text()
    assert "`classical:pixels`, no transfer" in report and "chosen by `auto`: no transfer" in report
    saved = yaml.safe_load((r.run_dir / "config.yaml").read_text())
    assert (saved["strategy"], saved["backbone"]) == ("classical", "classical:pixels")
    # the same numbers as fitting the baseline directly on the same splits
    splits = load_splits(cfg, data)
    lm = LabelMap.fit(splits.train.y)
    m = fit_classical(splits.train, lm.encode(splits.train.y), splits.val, lm.encode(splits.val.y),
                      "classification", len(lm), seed=0)
    direct = classification_metrics(lm.encode(splits.test.y), softmax(m.outputs(splits.test)), lm.classes)
    assert r.metrics["macro_f1"] == direct["macro_f1"] and r.metrics["accuracy"] == direct["accuracy"]
    run = load_run(r.run_dir)
    rows = predict_dataset(run, from_arrays(X[:5], y[:5]))
    assert len(rows) == 5 and all(row["label"] in lm.classes for row in rows)


def test_frozen_k_freezes_half_of_the_layer_groups(digits120, tmp_path, monkeypatch):
    """The frozen-K branch end to end: freeze = half the backbone's layer groups (scratch:cnn has 4)."""
    import transferkit.ranking.auto as auto

    forced = auto.AutoChoice("scratch:cnn", "frozen-k", "forced for the test", 8, 0.3, 0.5)
    monkeypatch.setattr(auto, "decide", lambda ranking, *a, **kw: forced)
    cfg = FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="auto", image_size=16, epochs=1, min_steps=0, num_threads=1,
                    runs_dir=str(tmp_path), name="auto-frozen"))
    r = fit(cfg, train=digits120, progress=False)
    assert r.details["auto"]["freeze"] == 2 and r.details["auto"]["strategy"] == "frozen-k"
    saved = yaml.safe_load((r.run_dir / "config.yaml").read_text())
    assert (saved["strategy"], saved["training"]["freeze"]) == ("fine-tune", 2)
    assert "- strategy: `fine-tune` (freeze 2)" in (r.run_dir / "report.md").read_text()


def test_cli_fit_auto_prints_the_choice_and_its_reason(spam_jsonl, tmp_path, capsys):
    from tests.helpers import cli

    rc = cli("--quiet", "fit", "--train", spam_jsonl, "--text-column", "subject,body", "--backbone", "auto",
             "--strategy", "auto", "--candidates", "scratch:transformer", "--max-length", "32",
             "--runs-dir", tmp_path, "--name", "a")
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("auto: no clear transfer")
    assert "hybrid on scratch:transformer: test macro_f1 = " in out


def test_few_text_labels_choose_contrastive_only_for_a_pretrained_backbone():
    scratch = [CandidateScore("scratch:transformer", -0.2, {"logme": -0.2}, 1.0, 64),
               CandidateScore(BASELINE, 0.1, {"logme": 0.1}, 0.1, 64, True, "tfidf + LR")]
    c = decide(Ranking("logme", tuple(sorted(scratch, key=lambda e: -e.score)), 100, 10, 8, "text"), 8)
    assert (c.backbone, c.strategy) == ("scratch:transformer", "hybrid")
    c = decide(ranking("text", -0.2, 0.1), 8)
    assert c.fit_strategy == "contrastive" and "competes as epoch 0" in c.reason
