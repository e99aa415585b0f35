"""``scratch:`` backbones: random initialisation, the honest no-transfer baseline.

``scratch:cnn`` (a small CNN), ``scratch:transformer`` (a small text Transformer with a hashed
vocabulary), or ``scratch:ARCH`` for any timm architecture with random weights (the same network
as a pretrained candidate, trained from scratch).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Backbone, BackboneMeta, ImagePreprocessor, groups_from_sequence
from .text import HashTokenizer


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallCNN(Backbone):
    """Four conv blocks (32-64-128-256 channels) and global average pooling."""

    WIDTHS = (32, 64, 128, 256)

    def __init__(self, image_size: int = 32, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        chans = (3, *widths)
        self.blocks = nn.Sequential(*[_conv_block(chans[i], chans[i + 1]) for i in range(len(widths))])
        self.preprocess = ImagePreprocessor(image_size, (0.5,) * 3, (0.5,) * 3, "bilinear")
        self.meta = BackboneMeta(spec="scratch:cnn", modality="image", feature_dim=widths[-1], source="scratch",
                                 pretrained=False, input_size=image_size, mean=(0.5,) * 3, std=(0.5,) * 3,
                                 interpolation="bilinear", licence="apache-2.0", extra={"architecture": "SmallCNN"})
        self.group_patterns = groups_from_sequence([f"blocks.{i}" for i in range(len(widths))])
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).mean(dim=(2, 3))


class SmallTextTransformer(Backbone):
    """Hashed word embeddings + a 2-layer Transformer encoder, mean-pooled."""

    def __init__(self, max_length: int = 256, dim: int = 128, layers: int = 2, heads: int = 4,
                 vocab_size: int = 32768) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos_embed = nn.Embedding(max_length, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.1, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.preprocess = HashTokenizer(vocab_size, max_length)
        self.meta = BackboneMeta(spec="scratch:transformer", modality="text", feature_dim=dim, source="scratch",
                                 pretrained=False, max_length=max_length, licence="apache-2.0",
                                 extra={"architecture": "SmallTextTransformer", "vocab_size": vocab_size})
        self.group_patterns = [r"^(embed|pos_embed)\."] + [rf"^encoder\.layers\.{i}\." for i in range(layers)]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        h = self.encoder(self.embed(ids) + self.pos_embed(pos), src_key_padding_mask=mask == 0)
        h = self.norm(h)
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


SCRATCH_NAMES = ["cnn", "transformer", "<any timm architecture>"]


def create_scratch(name: str, pretrained: bool = False, image_size: int | None = None,
                   max_length: int | None = None, seed: int | None = None, **_: Any) -> Backbone:
    """scratch:cnn | scratch:transformer | scratch:TIMM_ARCH (random init)."""
    if seed is not None:
        torch.manual_seed(seed)
    if name == "cnn":
        size = image_size or 32
        if not isinstance(size, int) or size < 2 ** len(SmallCNN.WIDTHS):  # each block halves the image
            from ..errors import bad_param

            raise bad_param("scratch:cnn", "image_size", f"an integer >= {2 ** len(SmallCNN.WIDTHS)}", image_size)
        return SmallCNN(size)
    if name == "transformer":
        return SmallTextTransformer(max_length or 256)
    import timm

    from ..errors import ConfigError
    from .timm_backbone import TimmBackbone

    if not timm.is_model(name):
        from ..errors import suggest

        raise ConfigError(f"Unknown scratch architecture '{name}'.{suggest(name, ['cnn', 'transformer'])} "
                          "Use scratch:cnn, scratch:transformer or a timm architecture name.")
    b = TimmBackbone(timm.create_model(name, pretrained=False), f"scratch:{name}", "scratch", False, image_size)
    return b
