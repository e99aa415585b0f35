"""A saved run is self-contained: it loads (with identical predictions) after it is moved, after the
Hugging Face directory it was fitted from is gone, and after the run it transferred parameters from is gone."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from transferkit.config import FitConfig
from transferkit.data import from_arrays
from transferkit.engine.loop import predict_outputs
from transferkit.features.inputs import Inputs
from transferkit.pipeline import fit
from transferkit.runs import load_run


@pytest.fixture(scope="module")
def digit_sets(digits):
    X, y = digits
    return from_arrays(X[:100], y[:100]), from_arrays(X[100:200], y[100:200]), from_arrays(X[200:230], y[200:230])


def _outputs(model, ds):
    return predict_outputs(model, Inputs(ds, model.backbone))


def test_moved_run_loads_with_identical_predictions(tmp_path, digit_sets):
    train, _, hold = digit_sets
    cfg = FitConfig(backbone="scratch:cnn", strategy="linear-probe", image_size=16, probe_grid=[1.0],
                    runs_dir=str(tmp_path / "a"), name="r")
    r = fit(cfg, train=train, progress=False)
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(str(r.run_dir), moved)
    loaded = load_run(moved)
    np.testing.assert_allclose(_outputs(loaded.model, hold), _outputs(r.model, hold), atol=1e-5)


def test_run_from_run_backbone_survives_removal_of_its_parent(tmp_path, digit_sets):
    """``fit --backbone run:PARENT`` stores every weight in its own model.safetensors, so loading it must
    not need PARENT any more (runs get moved, pruned, or were fitted on another machine)."""
    source, target, hold = digit_sets
    parent = fit(FitConfig.from_dict(dict(backbone="scratch:cnn", strategy="fine-tune", image_size=16, epochs=1, min_steps=0,
                           runs_dir=str(tmp_path), name="parent")), train=source, progress=False).run_dir
    child = fit(FitConfig(backbone=f"run:{parent}", strategy="linear-probe", image_size=16, probe_grid=[1.0],
                          runs_dir=str(tmp_path), name="child"), train=target, progress=False)
    expected = _outputs(child.model, hold)
    shutil.rmtree(parent)
    loaded = load_run(child.run_dir)
    np.testing.assert_allclose(_outputs(loaded.model, hold), expected, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_vit_dir(tmp_path_factory):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    d = tmp_path_factory.mktemp("hfvit") / "tiny-vit"
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64)
    ViTModel(cfg).save_pretrained(d)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.3, 0.3, 0.3],
                      image_std=[0.3, 0.3, 0.3]).save_pretrained(d)
    return d


def test_hf_vision_run_is_self_contained(tmp_path, tiny_vit_dir, digit_sets):
    train, _, hold = digit_sets
    work = tmp_path / "model"
    shutil.copytree(tiny_vit_dir, work)
    cfg = FitConfig.from_dict(dict(backbone=f"hf:{work}", strategy="fine-tune", epochs=1, min_steps=0, lr=1e-3,
                    runs_dir=str(tmp_path / "runs"), name="vit"))
    r = fit(cfg, train=train, progress=False)
    assert r.model.backbone.meta.input_size == 32 and r.model.backbone.meta.mean == (0.3, 0.3, 0.3)
    expected = _outputs(r.model, hold)
    shutil.rmtree(work)
    loaded = load_run(r.run_dir)
    assert loaded.model.backbone.meta.modality == "image"
    assert loaded.model.backbone.preprocess.describe() == r.model.backbone.preprocess.describe()
    np.testing.assert_allclose(_outputs(loaded.model, hold), expected, atol=1e-5)
