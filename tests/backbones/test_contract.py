"""The one backbone protocol, checked on every kind of backbone that works offline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.backbones.base import ImagePreprocessor, as_uint8_images

SPECS = ["packaged:efficientnet_lite0", "packaged:minilm-l6", "scratch:cnn", "scratch:transformer", "scratch:resnet18"]


@pytest.fixture(scope="module")
def built(lite0, minilm):
    cache = {"packaged:efficientnet_lite0": lite0, "packaged:minilm-l6": minilm}

    def get(spec):
        if spec not in cache:
            cache[spec] = create_backbone(spec, image_size=32, max_length=32, seed=0).eval()
        return cache[spec]

    return get


def _sample_batch(b):
    if b.meta.modality == "image":
        rng = np.random.default_rng(0)
        imgs = rng.integers(0, 256, size=(3, 40, 30, 3), dtype=np.uint8)
        return b.preprocess(as_uint8_images(imgs, 255))
    return b.preprocess(["first text", "a second, somewhat longer text with more tokens", "x"])


@pytest.mark.parametrize("spec", SPECS)
def test_feature_width_matches_meta(built, spec):
    b = built(spec)
    assert b.meta.spec == spec
    with torch.inference_mode():
        f = b(_sample_batch(b))
    assert f.shape == (3, b.meta.feature_dim)
    assert torch.isfinite(f).all()
    if b.meta.modality == "image":
        assert isinstance(b.preprocess, ImagePreprocessor)
        assert b.meta.input_size == 32 and b.preprocess.size == 32
    else:
        assert b.meta.max_length == 32


@pytest.mark.parametrize("spec", SPECS)
def test_layer_groups_cover_parameters_in_depth_order(built, spec):
    b = built(spec)
    groups = b.layer_groups()
    assert len(groups) >= 2, "fine-tuning needs several depth groups"
    assert all(groups), "no empty group"
    order = {n: i for i, (n, _) in enumerate(b.named_parameters())}
    flat = [n for g in groups for n in g]
    assert len(flat) == len(set(flat)), "a parameter is in two groups"
    assert set(flat) <= set(order)
    missing = set(order) - set(flat)
    # only a kept source classifier (unused for features) may stay outside the groups
    assert all(n.startswith(("model.classifier.", "model.fc.", "source_head.")) for n in missing), missing
    # bottom group first: every parameter of group i is registered before every parameter of group i+1
    for lower, upper in zip(groups, groups[1:]):
        assert max(order[n] for n in lower) < min(order[n] for n in upper)


@pytest.mark.parametrize("spec", SPECS)
def test_describe_preprocessing_and_meta_serialise(built, spec):
    import json

    b = built(spec)
    d = b.meta.to_dict()
    json.dumps(d)  # must be JSON-serialisable for backbone.json
    assert d["feature_dim"] == b.meta.feature_dim and d["modality"] in ("image", "text")
    pre = b.describe_preprocessing()
    if b.meta.modality == "image":
        assert pre["size"] == 32 and len(pre["mean"]) == 3
    else:
        assert pre["max_length"] == 32


def test_scratch_is_seeded_and_random():
    a = create_backbone("scratch:cnn", seed=3)
    b = create_backbone("scratch:cnn", seed=3)
    c = create_backbone("scratch:cnn", seed=4)
    wa, wb, wc = (dict(x.named_parameters())["blocks.0.0.weight"] for x in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)
    assert not a.meta.pretrained and a.meta.source == "scratch"


def test_as_uint8_images_layouts():
    gray = np.arange(2 * 4 * 5, dtype=np.float64).reshape(2, 4, 5) / 39.0  # in [0, 1]
    t = as_uint8_images(gray, 1.0)
    assert t.shape == (2, 3, 4, 5) and t.dtype == torch.uint8
    assert int(t[1, 0, 3, 4]) == 255 and int(t[0, 0, 0, 0]) == 0
    assert torch.equal(t[:, 0], t[:, 2])
    rgba = np.zeros((1, 6, 7, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    t = as_uint8_images(rgba, 255)
    assert t.shape == (1, 3, 6, 7) and int(t[0, 0, 0, 0]) == 200 and int(t[0, 1, 0, 0]) == 0
    digits16 = np.full((1, 8, 8), 16.0)
    assert int(as_uint8_images(digits16, 16.0).max()) == 255
