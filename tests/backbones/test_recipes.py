"""Training defaults by backbone family: an unset lr is filled per family, a given one is kept, runs save it."""
import dataclasses

import numpy as np

from transferkit.backbones.base import BackboneMeta
from transferkit.backbones.recipes import FAMILIES, STRATEGY_LR_SCALE, family, resolve_training
from transferkit.config import FitConfig, TrainConfig


def _meta(**kw):
    base = dict(spec="packaged:efficientnet_lite0", modality="image", feature_dim=8, source="packaged", pretrained=True)
    return BackboneMeta(**{**base, **kw})


def test_family_classifies_cnns_transformers_and_scratch():
    assert family(_meta()) == "convnet"
    assert family(_meta(spec="packaged:minilm-l6", modality="text")) == "transformer"
    assert family(_meta(spec="timm:vit_small_patch16_224", source="timm")) == "transformer"
    assert family(_meta(spec="scratch:cnn", source="scratch", pretrained=False)) == "scratch"


def test_unset_lr_takes_the_family_default_and_a_given_lr_is_kept():
    assert TrainConfig().lr is None
    text = _meta(spec="packaged:minilm-l6", modality="text")
    assert resolve_training(TrainConfig(), text).lr == FAMILIES["transformer"].lr
    assert resolve_training(TrainConfig(), _meta()).lr == FAMILIES["convnet"].lr
    assert FAMILIES["transformer"].lr < FAMILIES["convnet"].lr
    assert resolve_training(TrainConfig(lr=0.05), text).lr == 0.05
    other = dataclasses.replace(TrainConfig(), epochs=7)
    assert resolve_training(other, text).epochs == 7


def test_lora_trains_at_its_scale_of_the_family_rate_unless_an_lr_is_given():
    text = _meta(spec="packaged:minilm-l6", modality="text")
    scale = STRATEGY_LR_SCALE["lora"].lr
    assert scale > 1
    assert resolve_training(TrainConfig(), text, "lora").lr == FAMILIES["transformer"].lr * scale
    assert resolve_training(TrainConfig(), text, "fine-tune").lr == FAMILIES["transformer"].lr
    assert resolve_training(TrainConfig(lr=0.003), text, "lora").lr == 0.003


def test_a_run_saves_the_lr_it_trained_with(tmp_path):
    from sklearn.datasets import load_digits

    from transferkit import fit
    from transferkit.data import from_arrays

    d = load_digits()
    keep = np.arange(0, 200)
    cfg = FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="fine-tune", epochs=1, min_steps=0, image_size=16,
                                   num_threads=1, runs_dir=str(tmp_path), name="r"))
    assert cfg.training.lr is None
    r = fit(cfg, train=from_arrays(d.images[keep], d.target[keep]), progress=False)
    saved = FitConfig.from_yaml(r.run_dir / "config.yaml")
    assert saved.training.lr == FAMILIES["scratch"].lr


def test_a_lora_run_saves_its_scaled_lr(tmp_path):
    from sklearn.datasets import load_digits

    from transferkit import fit
    from transferkit.data import from_arrays

    d = load_digits()
    keep = np.arange(0, 120)
    cfg = FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="lora", epochs=1, min_steps=0, image_size=16,
                                   num_threads=1, runs_dir=str(tmp_path), name="r"))
    r = fit(cfg, train=from_arrays(d.images[keep], d.target[keep]), progress=False)
    saved = FitConfig.from_yaml(r.run_dir / "config.yaml")
    assert saved.training.lr == FAMILIES["scratch"].lr * STRATEGY_LR_SCALE["lora"].lr
