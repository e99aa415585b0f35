"""The ``contrastive`` strategy: contrastive tuning of the packaged MiniLM's top layers on all pairs of a batch of
unique texts, then the hybrid head (TF-IDF + tuned embeddings) folded into the saved model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.errors import ConfigError
from transferkit.features import Inputs
from transferkit.pipeline import fit
from transferkit.runs import load_run

SPORT = ["The team won the football match in extra time", "Our striker scored twice in the second half",
         "The coach praised the defence after the game", "Fans cheered as the goalkeeper saved a penalty",
         "The league title race goes down to the last match", "A late goal sealed the cup final victory",
         "The midfielder signed a new contract with the club", "Tickets for the derby sold out in an hour",
         "The referee showed a red card in the first half", "The club's new stadium holds sixty thousand fans",
         "Training resumes on Monday before the away game", "The captain lifted the trophy at the final whistle"]
FOOD = ["Bake the bread for forty minutes until golden", "Chop the onions and fry them in olive oil",
        "This soup recipe needs fresh basil and garlic", "Whisk the eggs with sugar to make the cake batter",
        "Simmer the tomato sauce slowly for an hour", "Season the roast chicken with salt and lemon",
        "Knead the pizza dough and let it rise overnight", "Serve the pasta with grated parmesan cheese",
        "Add a pinch of cinnamon to the apple pie filling", "Grill the vegetables and drizzle with vinegar",
        "Melt the butter before stirring in the flour", "Marinate the fish in soy sauce and ginger"]
N_TRAIN = 8  # per class; the rest split into validation and test


def _parts():
    def ds(a, b):
        return from_arrays(SPORT[a:b] + FOOD[a:b], ["sport"] * (b - a) + ["food"] * (b - a))

    return ds(0, N_TRAIN), ds(N_TRAIN, 10), ds(10, 12)


def _config(tmp_path, **kw) -> FitConfig:
    return FitConfig.from_dict({"backbone": "packaged:minilm-l6", "strategy": "contrastive", "max_length": 32,
                                "seed": 5, "epochs": 2, "min_steps": 6, "checkpoint_every": 0, "num_threads": 1,
                                "runs_dir": str(tmp_path / "runs"), "name": "ct", **kw})


def _outputs(model, ds) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(Inputs(ds, model.backbone).batch(np.arange(len(ds)))).float().numpy()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contrastive")
    train, val, test = _parts()
    return fit(_config(tmp), train=train, val=val, test=test, save=True, progress=False)


def test_trains_loss_falls_and_keeps_a_validated_epoch(fitted):
    det = fitted.details["contrastive"]
    hist = det["val_by_epoch"]
    assert len(hist) == 3  # epoch 0 (frozen encoder) + 2 epochs
    assert det["best_epoch"] in (0, 1, 2) and fitted.val_metrics["macro_f1"] == pytest.approx(max(hist), abs=1e-3)
    losses = [e["train_loss"] for e in _history(fitted)]
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert det["precomputed_layers"] == 3 and det["tune_layers"] == 3  # MiniLM's bottom 3 layers precomputed


def _history(res):
    import json

    return json.loads((res.run_dir / "history.json").read_text(encoding="utf-8"))


def test_saved_run_round_trips(fitted):
    _, val, test = _parts()
    run = load_run(fitted.run_dir)
    assert run.config.strategy == "contrastive" and run.model.lexical is not None
    # the saved config holds the few-shot settings it trained with, not the backbone family's lr
    assert run.config.training.lr == fitted.details["contrastive"]["lr"]
    for ds in (val, test):
        np.testing.assert_allclose(_outputs(run.model, ds), _outputs(fitted.model, ds), atol=1e-5, rtol=0)


def test_deterministic_for_a_seed(fitted, tmp_path):
    train, val, test = _parts()
    again = fit(_config(tmp_path), train=train, val=val, test=test, save=False, progress=False)
    assert again.details["contrastive"]["val_by_epoch"] == fitted.details["contrastive"]["val_by_epoch"]
    np.testing.assert_allclose(_outputs(again.model, test), _outputs(fitted.model, test), atol=1e-6, rtol=0)


def test_refuses_images_with_a_one_line_error(digits, tmp_path):
    X, y = digits
    cfg = FitConfig.from_dict({"backbone": "scratch:cnn", "strategy": "contrastive", "image_size": 16,
                               "runs_dir": str(tmp_path / "runs"), "name": "img"})
    with pytest.raises(ConfigError) as e:
        fit(cfg, train=from_arrays(X[:40], y[:40], value_max=16), save=True, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "contrastive" in msg and "text" in msg


def test_split_encoder_matches_the_full_forward_pass():
    """Precomputed frozen layers + the top layers on them give the backbone's own embeddings."""
    from transferkit.backbones import create_backbone
    from transferkit.features.extract import extract_features
    from transferkit.strategies.contrastive import SplitEncoder

    bb = create_backbone("packaged:minilm-l6", max_length=32)
    train, _, _ = _parts()
    inputs = Inputs(train, bb)
    full = extract_features(bb, inputs, 5, progress=False)
    for freeze in (1, 4):
        enc = SplitEncoder(bb, freeze)
        assert enc.frozen == freeze - 1
        np.testing.assert_allclose(enc.embed(inputs, enc.lower(inputs, 3), 7), full, atol=1e-5, rtol=0)


def test_pair_losses_have_known_answers():
    from transferkit.strategies.contrastive import pair_loss

    y = torch.tensor([0, 0, 1, 1])
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])  # same class parallel, classes orthogonal
    assert float(pair_loss(z, y, "cosine")) == pytest.approx(0.0, abs=1e-7)
    flipped = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # 4 of the 6 pairs wrong by 1
    assert float(pair_loss(flipped, y, "cosine")) == pytest.approx(4 / 6)
    assert float(pair_loss(z, y, "supcon")) < float(pair_loss(flipped, y, "supcon"))
    with pytest.raises(ConfigError, match="Unknown contrastive loss"):
        pair_loss(z, y, "triplet")


def test_few_shot_defaults_apply_only_where_the_user_kept_trainconfigs_defaults():
    from transferkit.config import TrainConfig
    from transferkit.strategies.contrastive import DEFAULTS, STEPS_PER_EPOCH, TUNE_LAYERS, resolve_settings

    s = resolve_settings(TrainConfig(), n_groups=7)  # MiniLM: embeddings + 6 layers
    assert s.training.lr == DEFAULTS["lr"] and s.training.epochs == DEFAULTS["epochs"]
    assert s.steps_per_epoch == STEPS_PER_EPOCH and s.tune_layers == TUNE_LAYERS and s.training.freeze == 7 - TUNE_LAYERS
    s = resolve_settings(TrainConfig(lr=3e-5, epochs=2, min_steps=10, freeze=2), n_groups=7)
    assert (s.training.lr, s.training.epochs, s.steps_per_epoch, s.training.freeze, s.tune_layers) == (3e-5, 2, 5, 2, 5)
    assert resolve_settings(TrainConfig(freeze=9), n_groups=7).training.freeze == 6  # the top group always trains
