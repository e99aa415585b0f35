"""Hugging Face adapters: ``hf:REPO_OR_LOCAL_DIR`` for text encoders and vision models."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .base import Backbone, BackboneMeta, ImagePreprocessor
from .text import HFTokenizer

_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def _depth_patterns(names: list[str]) -> list[str]:
    """Embeddings first, then one group per numbered layer, then everything else."""
    depths = sorted({int(m.group(1)) for n in names if (m := _LAYER.search(n))})
    pats = [r"embed"]
    pats += [rf"\.(?:layer|layers|h|block|blocks)\.{d}\." for d in depths]
    return pats


def _is_vision(config) -> bool:
    return hasattr(config, "image_size") or hasattr(config, "num_channels")


class HFTextBackbone(Backbone):
    """A transformer encoder with mean (or CLS) pooling over non-padding tokens."""

    def __init__(self, model, tokenizer, spec: str, source: str, pretrained: bool, max_length: int,
                 pooling: str = "mean", licence: str = "unknown", files_dir: str | None = None) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"The 'pooling' option must be 'mean' or 'cls'. Got {pooling!r} instead.")
        self.model = model
        self.pooling = pooling
        self.preprocess = HFTokenizer(tokenizer, max_length)
        self.meta = BackboneMeta(
            spec=spec, modality="text", feature_dim=int(model.config.hidden_size), source=source,
            pretrained=pretrained, max_length=int(max_length), licence=licence,
            extra={"architecture": type(model).__name__, "pooling": pooling, "files_dir": files_dir},
        )
        self.group_patterns = _depth_patterns([n for n, _ in self.named_parameters()])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        h = out.last_hidden_state
        if self.pooling == "cls":
            return h[:, 0]
        m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def save_files(self, directory: Path) -> None:
        """Config and tokenizer, so a saved run can rebuild this backbone offline."""
        self.model.config.save_pretrained(directory)
        self.preprocess.tokenizer.save_pretrained(directory)


class HFImageBackbone(Backbone):
    """A Hugging Face vision model; features are its pooled output (or mean of the last hidden state)."""

    def __init__(self, model, processor, spec: str, source: str, pretrained: bool, image_size: int | None,
                 files_dir: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        size = image_size or int(getattr(model.config, "image_size", 224))
        mean = tuple(getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5))
        std = tuple(getattr(processor, "image_std", None) or (0.5, 0.5, 0.5))
        dim = int(getattr(model.config, "hidden_size", 0) or model.config.hidden_sizes[-1])
        self.preprocess = ImagePreprocessor(size, mean, std, "bicubic")
        self.meta = BackboneMeta(spec=spec, modality="image", feature_dim=dim, source=source,
                                 pretrained=pretrained, input_size=size, mean=mean, std=std,
                                 extra={"architecture": type(model).__name__, "files_dir": files_dir})
        self.group_patterns = _depth_patterns([n for n, _ in self.named_parameters()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x.contiguous())
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        return out.last_hidden_state.mean(1)

    def save_files(self, directory: Path) -> None:
        self.model.config.save_pretrained(directory)
        if self.processor is not None:
            self.processor.save_pretrained(directory)


def _load_model(path: str, pretrained: bool):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(path)
    if pretrained:
        return AutoModel.from_pretrained(path), config
    return AutoModel.from_config(config), config


def create_hf_text(path: str, spec: str, source: str, pretrained: bool = True, max_length: int | None = None,
                   pooling: str = "mean", licence: str = "unknown") -> HFTextBackbone:
    from transformers import AutoTokenizer

    model, config = _load_model(path, pretrained)
    tok = AutoTokenizer.from_pretrained(path)
    limit = int(max_length or min(256, getattr(config, "max_position_embeddings", 512)))
    return HFTextBackbone(model, tok, spec, source, pretrained, limit, pooling, licence, files_dir=path)


def create_hf(name: str, pretrained: bool = True, image_size: int | None = None, max_length: int | None = None,
              pooling: str = "mean", **_: Any) -> Backbone:
    """hf:REPO_OR_LOCAL_DIR: a Hugging Face text encoder or vision model (hub id or a local directory)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        where = "local directory" if Path(name).exists() else "Hugging Face hub id (offline? set a local dir)"
        raise ConfigError(f"Cannot load Hugging Face model '{name}' as a {where}: {str(e).splitlines()[0]}") from None
    if _is_vision(config):
        from transformers import AutoImageProcessor

        model, _ = _load_model(name, pretrained)
        try:
            processor = AutoImageProcessor.from_pretrained(name)
        except (OSError, ValueError):
            processor = None
        return HFImageBackbone(model, processor, f"hf:{name}", "hf", pretrained, image_size, files_dir=name)
    return create_hf_text(name, f"hf:{name}", "hf", pretrained, max_length, pooling)
