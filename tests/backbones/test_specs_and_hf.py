"""Backbone specs: parsing and errors, and ``hf:LOCAL_DIR`` with tiny random Hugging Face models."""
from __future__ import annotations

import pytest
import torch

from transferkit.backbones import SOURCES, create_backbone, parse_spec
from transferkit.errors import ConfigError


@pytest.mark.parametrize("spec, expected", [("timm:resnet18", ("timm", "resnet18")),
                                            ("hf:/some/dir:with:colons", ("hf", "/some/dir:with:colons")),
                                            ("packaged:minilm-l6", ("packaged", "minilm-l6"))])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


def _all_sources_listed(msg: str) -> None:
    for s in SOURCES.names():
        assert s in msg


def test_missing_prefix_suggests_and_lists_sources():
    with pytest.raises(ConfigError) as e:
        create_backbone("resnet18")
    msg = str(e.value)
    assert "timm:resnet18" in msg and "prefix" in msg
    _all_sources_listed(msg)


def test_unknown_prefix_suggests_closest_and_lists_sources():
    with pytest.raises(ConfigError) as e:
        create_backbone("tim:resnet18")
    msg = str(e.value)
    assert "Did you mean 'timm'" in msg
    _all_sources_listed(msg)


def test_unknown_packaged_name_suggests():
    with pytest.raises(ConfigError) as e:
        create_backbone("packaged:efficientnet_lite9")
    msg = str(e.value)
    assert "Did you mean 'efficientnet_lite" in msg
    assert "minilm-l6" in msg and "efficientnet_lite0" in msg


def test_unknown_scratch_arch():
    with pytest.raises(ConfigError, match="Unknown scratch architecture 'cnnn'.*Did you mean 'cnn'"):
        create_backbone("scratch:cnnn")


def test_empty_name_after_prefix():
    with pytest.raises(ConfigError, match="names no model"):
        parse_spec("timm:")


def test_hf_missing_local_dir_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="Cannot load Hugging Face model"):
        create_backbone(f"hf:{tmp_path / 'nope'}")


# --------------------------------------------------------------------------------------------------
# hf:LOCAL_DIR
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from transferkit.backbones.packaged import minilm_dir

    d = tmp_path_factory.mktemp("hf") / "tiny-bert"
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    d = tmp_path_factory.mktemp("hf") / "tiny-vit"
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64)
    ViTModel(cfg).save_pretrained(d)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.4, 0.4],
                      image_std=[0.2, 0.2, 0.2]).save_pretrained(d)
    return d


def test_hf_local_text_encoder(tiny_bert_dir):
    from transformers import BertModel

    b = create_backbone(f"hf:{tiny_bert_dir}", max_length=16).eval()
    assert b.meta.modality == "text" and b.meta.feature_dim == 32 and b.meta.max_length == 16
    assert b.meta.spec == f"hf:{tiny_bert_dir}"
    # the saved (random) weights are the ones loaded, not a fresh initialisation
    saved = BertModel.from_pretrained(tiny_bert_dir)
    assert torch.equal(b.model.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight)
    with torch.inference_mode():
        f = b(b.preprocess(["hello world", "a much longer sentence " * 20]))
    assert f.shape == (2, 32)
    groups = b.layer_groups()
    assert len(groups) == 3  # embeddings, layer 0, layer 1 (+ pooler)
    assert all(n.startswith("model.embeddings.") for n in groups[0])
    assert all(".layer.0." in n for n in groups[1])


def test_hf_local_text_encoder_cls_pooling(tiny_bert_dir):
    b = create_backbone(f"hf:{tiny_bert_dir}", max_length=16, pooling="cls").eval()
    m = create_backbone(f"hf:{tiny_bert_dir}", max_length=16).eval()
    batch = b.preprocess(["hello world, this is a test"])
    with torch.inference_mode():
        cls = b(batch)
        h = b.model(**batch).last_hidden_state
        mean = m(batch)
    assert torch.allclose(cls, h[:, 0])
    assert torch.allclose(mean, h.mean(1), atol=1e-5)
    with pytest.raises(ConfigError, match="pooling"):
        create_backbone(f"hf:{tiny_bert_dir}", pooling="max")


def test_hf_local_vision_model(tiny_vit_dir):
    b = create_backbone(f"hf:{tiny_vit_dir}").eval()
    assert b.meta.modality == "image" and b.meta.feature_dim == 32 and b.meta.input_size == 32
    assert b.meta.mean == (0.4, 0.4, 0.4) and b.meta.std == (0.2, 0.2, 0.2)
    x = b.preprocess(torch.randint(0, 256, (2, 3, 50, 40), dtype=torch.uint8))
    assert x.shape == (2, 3, 32, 32)
    with torch.inference_mode():
        assert b(x).shape == (2, 32)
    groups = b.layer_groups()
    assert len(groups) == 3
    assert sum(map(len, groups)) == len(list(b.parameters()))
