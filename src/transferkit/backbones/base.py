"""The one backbone protocol every hub adapter implements (timm's model surface, reduced)."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

Modality = Literal["image", "text"]


@dataclass(frozen=True)
class BackboneMeta:
    """Frozen metadata that drives preprocessing and is saved into every run."""

    spec: str
    modality: Modality
    feature_dim: int
    source: str
    pretrained: bool
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str = "bicubic"
    max_length: int | None = None
    licence: str = "unknown"
    source_classes: int | None = None  # size of the source-task head, when the backbone keeps one
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("mean", "std"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d


class ImagePreprocessor:
    """Turns uint8 image tensors [N, 3, H, W] into normalised float tensors at the backbone's size."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...], interpolation: str = "bicubic"):
        self.size = int(size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.interpolation = interpolation

    def describe(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mean": [round(float(v) / 255.0, 6) for v in self.mean.flatten()],
            "std": [round(float(v) / 255.0, 6) for v in self.std.flatten()],
            "interpolation": self.interpolation,
        }

    def resize_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """Resize a uint8 batch [N, 3, H, W] to [N, 3, size, size] (antialiased), still uint8."""
        if x.shape[-2:] == (self.size, self.size):
            return x
        mode = "bicubic" if self.interpolation == "bicubic" else "bilinear"
        y = torch.nn.functional.interpolate(
            x.float(), size=(self.size, self.size), mode=mode, align_corners=False, antialias=True
        )
        return y.round_().clamp_(0, 255).to(torch.uint8)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, size, size] -> normalised float32, channels_last."""
        x = self.resize_uint8(x)
        out = (x.float() - self.mean) / self.std
        return out.contiguous(memory_format=torch.channels_last)


class Backbone(nn.Module):
    """A feature extractor: ``forward(batch) -> [B, feature_dim]`` plus metadata.

    Subclasses set ``self.meta`` and ``self.preprocess`` (an ``ImagePreprocessor`` for images,
    a tokenizer-like callable ``texts -> dict of tensors`` for text) and implement ``forward``.
    ``group_patterns`` lists regexes over parameter names, ordered from input to output; they
    define the layer groups used for freezing and layer-wise learning-rate decay.
    """

    meta: BackboneMeta
    preprocess: Any
    group_patterns: list[str] = []
    # A source-task head that reads this backbone's *features* (see :meth:`head_logits`): a plain callable, never a
    # submodule, so it is not trained, saved, moved or part of the weights hash. None: no such head.
    feature_head: Callable[[torch.Tensor], torch.Tensor] | None = None

    def layer_groups(self) -> list[list[str]]:
        """Parameter names split into ordered depth groups (bottom first)."""
        names = [n for n, _ in self.named_parameters()]
        if not self.group_patterns:
            return [names]
        groups: list[list[str]] = [[] for _ in self.group_patterns]
        for n in names:
            for i, pat in enumerate(self.group_patterns):
                if re.search(pat, n):
                    groups[i].append(n)
                    break
            else:  # unmatched parameters join the last (top) group
                groups[-1].append(n)
        return [g for g in groups if g]

    def source_logits(self, batch: Any) -> torch.Tensor | None:
        """Logits of the source-task head (e.g. ImageNet) on an input batch, if this backbone keeps one
        (``meta.source_classes`` is then its number of classes)."""
        return None

    def head_logits(self, features: torch.Tensor) -> torch.Tensor | None:
        """Source-task logits [N, classes] from this backbone's own features [N, feature_dim], or None (the
        default) when it carries no head that reads them.

        A ``run:`` backbone returns its parent run's classification head here (``feature_head``), so that
        transferability scores that need a source head (LEEP, NCE) work on it; heads that read the input
        (timm / torchvision ImageNet classifiers) are :meth:`source_logits` instead."""
        if self.feature_head is None:
            return None
        with torch.inference_mode():
            return self.feature_head(features)

    def describe_preprocessing(self) -> dict[str, Any]:
        if isinstance(self.preprocess, ImagePreprocessor):
            return self.preprocess.describe()
        return {"max_length": self.meta.max_length, "tokenizer": type(self.preprocess).__name__}


def groups_from_sequence(prefixes: list[str]) -> list[str]:
    """Regexes that match parameter names starting with each prefix, in order."""
    return ["^" + re.escape(p) + r"(\.|$)" for p in prefixes]


def as_uint8_images(arr: np.ndarray, value_max: float) -> torch.Tensor:
    """numpy images [N,H,W] / [N,H,W,C] / [N,C,H,W] in [0, value_max] -> uint8 tensor [N,3,H,W]."""
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[:, None, :, :]
    elif a.ndim == 4 and a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3, 4):
        a = np.transpose(a, (0, 3, 1, 2))
    if a.dtype != np.uint8:
        a = np.clip(np.asarray(a, dtype=np.float32) * (255.0 / float(value_max)), 0, 255).round().astype(np.uint8)
    t = torch.from_numpy(np.ascontiguousarray(a))
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    elif t.shape[1] == 4:
        t = t[:, :3]
    return t.contiguous()


def unknown_model(source: str, name: str, choices: list[str], listing: str) -> ConfigError:
    """The error for a model name its source does not know, with the closest names it does."""
    import difflib

    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Closest: {', '.join(close)}." if close else ""
    return ConfigError(f"Unknown {source} model '{name}' (backbone {source}:{name}).{hint} All names: {listing}.")


def download_failed(spec: str, err: BaseException) -> ConfigError:
    """The error for pretrained weights that could not be fetched (offline, no cache, or a wrong hub id)."""
    first = (str(err).splitlines() or [type(err).__name__])[0][:200]
    return ConfigError(f"Cannot get the pretrained weights of '{spec}' ({type(err).__name__}: {first}). Check the "
                       "connection or the local cache, or use an offline backbone such as packaged:efficientnet_lite0 "
                       "(see `transferkit info`).")
