"""``run:PATH``: parameter transfer from an earlier transferkit run (its backbone weights; its head dropped).

The backbone source ``run`` of :data:`transferkit.backbones.SOURCES`, registered there by reference
(``SOURCES.register_lazy("run", "transferkit.runs.run_source:create_from_run", ...)``) because it loads a saved
run, which sits above the backbones; ``create_backbone("run:PATH")`` imports this module on first use.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..backbones.base import Backbone
from .store import load_run


class ParentHead:
    """The parent run's classification head as the backbone's ``feature_head``: a plain callable holding the
    module, so the head is not registered as a submodule of the backbone (not trained, saved or hashed)."""

    def __init__(self, head: nn.Module) -> None:
        self.head = head.eval()

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.to(torch.float32)).double()


def create_from_run(path: str, pretrained: bool = True, **_: Any) -> Backbone:
    """run:PATH, the backbone of a saved run, e.g. a scratch CNN trained on a source task."""
    run = load_run(path)
    backbone = run.model.backbone
    parent = run.info.get("lineage", [])
    # How to rebuild this architecture without the parent run (weights come from the child's own file).
    root = backbone.meta.extra.get("rebuild_spec", backbone.meta.spec)
    backbone.meta = dataclasses.replace(backbone.meta, spec=f"run:{path}", source="run", pretrained=True,
                                        extra={**backbone.meta.extra, "rebuild_spec": root})
    if run.labels.get("task") == "classification":  # the source head for LEEP / NCE (Backbone.head_logits)
        backbone.feature_head = ParentHead(run.model.head)
    backbone.lineage = [{"run": str(run.path), "backbone": run.config.backbone, "strategy": run.config.strategy,
                         "train": run.config.train}] + list(parent)
    return backbone


__all__ = ["ParentHead", "create_from_run"]
