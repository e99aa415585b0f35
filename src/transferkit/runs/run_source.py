"""``run:PATH``: parameter transfer from an earlier transferkit run (its backbone weights; its head dropped), or
the adapted encoder of a pretraining run (``transferkit pretrain``: run.json kind "pretrain", HF files in encoder/).

The backbone source ``run`` of :data:`transferkit.backbones.SOURCES`, registered there by reference
(``SOURCES.register_lazy("run", "transferkit.runs.run_source:create_from_run", ...)``) because it loads a saved
run, which sits above the backbones; ``create_backbone("run:PATH")`` imports this module on first use.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backbones.base import Backbone
from ..errors import DataError
from .integrity import read_run_json, verify
from .store import ENCODER_DIR, PRETRAIN_KIND, is_pretrain_run, load_run


class ParentHead:
    """The parent run's classification head as the backbone's ``feature_head``: a plain callable holding the
    module, so the head is not registered as a submodule of the backbone (not trained, saved or hashed)."""

    def __init__(self, head: nn.Module) -> None:
        self.head = head.eval()

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.to(torch.float32)).double()


def create_from_run(path: str, pretrained: bool = True, max_length: int | None = None, pooling: str = "mean",
                    **_: Any) -> Backbone:
    """run:PATH, the backbone of a saved run, e.g. a scratch CNN trained on a source task, or the encoder of a
    pretraining run (``transferkit pretrain``)."""
    if is_pretrain_run(path):
        return _from_pretrain_run(path, max_length, pooling)
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


def _from_pretrain_run(path: str, max_length: int | None, pooling: str) -> Backbone:
    """A pretraining run's encoder (Hugging Face format under ``encoder/``) as a text backbone; its lineage names
    the run and, after it, the run's own source backbone (and that one's lineage)."""
    from ..backbones.hf import create_hf_text

    p = Path(path)
    info = read_run_json(p)
    verify(p, info)
    enc = p / info.get("encoder", ENCODER_DIR)
    if not (enc / "config.json").exists():
        raise DataError(f"'{p}' is a pretraining run without its encoder ({enc} is missing or incomplete); "
                        "pretrain again.")
    backbone = create_hf_text(str(enc), spec=f"run:{path}", source="run", pretrained=True, max_length=max_length,
                              pooling=pooling)
    data = info.get("data", {})
    backbone.lineage = [{"run": str(p), "kind": PRETRAIN_KIND, "backbone": info.get("backbone"),
                         "strategy": f"{info.get('objective')} pretraining", "objective": info.get("objective"),
                         "steps": info.get("steps"),
                         "train": data.get("path"), "data_fingerprint": data.get("fingerprint")}] + \
        list(info.get("lineage", []))
    return backbone


__all__ = ["ParentHead", "create_from_run"]
