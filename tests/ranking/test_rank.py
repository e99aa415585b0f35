"""rank_backbones and `transferkit rank` on real (small) data: digits images and SpamAssassin texts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import stratified_pick
from transferkit.baselines import classical_features
from transferkit.data import Dataset, from_arrays
from transferkit.errors import ConfigError, DataError
from transferkit.ranking.rank import BASELINE, CandidateScore, Ranking, rank_backbones
from transferkit.strategies import FeatureCache


@pytest.fixture(scope="module")
def digits300(digits):
    X, y = digits
    idx = stratified_pick(y, 30, seed=1)
    return from_arrays(X[idx], y[idx])


@pytest.fixture(scope="module")
def digits_ranking(digits300, tmp_path_factory):
    cache = FeatureCache(tmp_path_factory.mktemp("rank_cache"))
    return rank_backbones(digits300, ["packaged:efficientnet_lite0", "scratch:cnn"], "logme",
                          metrics=["leep", "nce", "hscore", "knn"], image_size=32, cache=cache), cache


def test_ranking_scores_every_candidate_and_the_baseline(digits_ranking):
    r, _ = digits_ranking
    scores = [e.score for e in r.entries]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    assert {e.spec for e in r.entries} == {"packaged:efficientnet_lite0", "scratch:cnn", BASELINE}
    assert (r.n_samples, r.n_classes, r.labels_per_class) == (300, 10, 30)
    by = {e.spec: e for e in r.entries}
    assert by["packaged:efficientnet_lite0"].feature_dim == 1280
    assert by[BASELINE].baseline and by[BASELINE].feature_dim == 8 * 8 * 3
    for e in r.entries:
        assert np.isfinite(e.scores["logme"]) and np.isfinite(e.scores["hscore"]) and 0 <= e.scores["knn"] <= 1


def test_leep_nce_need_a_source_head(digits_ranking):
    """ImageNet Lite0 keeps its 1000-class head; a scratch CNN and the baseline have none: marked unavailable."""
    r, _ = digits_ranking
    by = {e.spec: e for e in r.entries}
    lite = by["packaged:efficientnet_lite0"]
    assert lite.scores["leep"] < 0 and lite.scores["nce"] <= 0 and "1000 classes" in lite.note
    assert by["scratch:cnn"].scores["leep"] is None and by[BASELINE].scores["nce"] is None
    table = "\n".join(r.table())
    assert "unavailable" in table and "no source classifier head" in table


def test_raw_pixels_outrank_imagenet_features_on_8x8_digits(digits_ranking):
    """The issue's motivating case: on 8x8 digits raw-pixel LR beats ImageNet Lite0 features at every budget;
    LogME on the same footing ranks the no-transfer baseline above Lite0."""
    r, _ = digits_ranking
    assert r.position(BASELINE) < r.position("packaged:efficientnet_lite0")


def test_second_ranking_hits_the_feature_cache(digits300, digits_ranking):
    r, cache = digits_ranking
    hits = cache.hits
    again = rank_backbones(digits300, ["packaged:efficientnet_lite0"], "leep", image_size=32, cache=cache,
                           baseline=False)
    assert cache.hits == hits + 2  # features + source logits
    assert again.best.score == pytest.approx(next(e.scores["leep"] for e in r.entries if e.spec.startswith("pack")))


def test_leep_ranking_puts_headless_candidates_last(digits300, tmp_path):
    r = rank_backbones(digits300.subset(np.arange(60)), ["scratch:cnn"], "leep", image_size=16,
                       cache=FeatureCache(tmp_path))
    assert r.best is None and all(not e.available for e in r.entries)
    assert "unavailable" in r.recommendation() or "could be scored" in r.recommendation()


def test_text_baseline_tfidf_row_space_is_exact(spam_records):
    texts = [f"{r['subject']}\n{r['body']}" for r in spam_records[:40]]
    ds = Dataset("text", texts, np.asarray([r["label"] for r in spam_records[:40]], dtype=object))
    coords, dim, desc = classical_features(ds)
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
    assert dim == x.shape[1] and "TF-IDF" in desc
    np.testing.assert_allclose(coords @ coords.T, (x @ x.T).toarray(), atol=1e-8)  # same geometry, N dims


def test_rank_text_candidates(spam_records, tmp_path):
    texts = [f"{r['subject']}\n{r['body']}" for r in spam_records[:48]]
    ds = Dataset("text", texts, np.asarray([r["label"] for r in spam_records[:48]], dtype=object))
    r = rank_backbones(ds, ["scratch:transformer"], "logme", metrics=["knn"], max_length=32,
                       cache=FeatureCache(tmp_path))
    assert {e.spec for e in r.entries} == {"scratch:transformer", BASELINE}
    assert r.modality == "text" and all(e.available for e in r.entries)


def test_max_samples_takes_a_stratified_subset(digits300, tmp_path):
    r = rank_backbones(digits300, [], "logme", max_samples=100, cache=FeatureCache(tmp_path))
    assert r.n_samples == 100 and r.labels_per_class == 10 and "subset of 100 of 300" in r.notes[0]


def test_recommendation_warns_when_the_baseline_ranks_first():
    entries = (CandidateScore(BASELINE, 0.3, {"logme": 0.3}, 0.1, 192, True, "pixels 8x8 + LR"),
               CandidateScore("packaged:efficientnet_lite0", 0.1, {"logme": 0.1}, 2.0, 1280))
    text = Ranking("logme", entries, 100, 10, 10, "image").recommendation()
    assert text.startswith("WARNING") and "unlikely to pay" in text and "packaged:efficientnet_lite0 0.1000" in text
    flipped = Ranking("logme", entries[::-1], 100, 10, 10, "image").recommendation()
    assert flipped.startswith("Recommended: packaged:efficientnet_lite0") and "ranks 2 of 2" in flipped


def test_rank_errors(digits300):
    with pytest.raises(ConfigError, match="Unknown transferability metric 'logmee'. Did you mean 'logme'"):
        rank_backbones(digits300, ["scratch:cnn"], "logmee")
    with pytest.raises(ConfigError, match="takes texts"):
        rank_backbones(digits300, ["scratch:transformer"])
    with pytest.raises(DataError, match="labelled"):
        rank_backbones(from_arrays(np.zeros((4, 8, 8))), ["scratch:cnn"])
    with pytest.raises(ConfigError, match="source prefix"):
        rank_backbones(digits300, ["efficientnet_lite0"])


# -- CLI --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digit_folder(digits, tmp_path_factory):
    from PIL import Image

    X, y = digits
    root = tmp_path_factory.mktemp("digit_folder")
    for i in stratified_pick(y, 8, seed=2):
        (root / str(y[i])).mkdir(exist_ok=True)
        Image.fromarray((X[i] * 255 / 16).astype("uint8")).save(root / str(y[i]) / f"{i}.png")
    return root


def test_cli_rank_prints_a_ranked_table(digit_folder, tmp_path, capsys):
    from transferkit.cli.main import main

    out = tmp_path / "ranking.json"
    rc = main(["--quiet", "rank", "--data", str(digit_folder), "--backbones", "scratch:cnn", "--image-size", "16",
               "--all-metrics", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "| rank | candidate | logme | leep | nce | hscore | knn | time (s) | feature dim |" in text
    assert "classical (no transfer)" in text and "80 examples, 10 classes" in text
    assert ("Recommended:" in text) or ("WARNING" in text)
    saved = json.loads(out.read_text())
    assert saved["metric"] == "logme" and len(saved["entries"]) == 2 and saved["recommendation"]


def test_cli_rank_errors_exit_2(digit_folder, capsys):
    from transferkit.cli.main import main

    assert main(["rank", "--data", str(digit_folder), "--backbones", "packaged:efficientnet_lte0"]) == 2
    assert "Did you mean 'efficientnet_lite0'" in capsys.readouterr().err
    assert main(["rank", "--data", str(digit_folder), "--backbones", "scratch:cnn", "--metric", "nope"]) == 2
    assert main(["rank", "--data", str(digit_folder) + "-missing", "--backbones", "scratch:cnn"]) == 2
