"""``run:PATH``: parameter transfer from an earlier transferkit run (its backbone weights; its head dropped)."""
from __future__ import annotations

from typing import Any

from .base import Backbone


def create_from_run(path: str, pretrained: bool = True, **_: Any) -> Backbone:
    """run:PATH, the backbone of a saved run, e.g. a scratch CNN trained on a source task."""
    from ..runs.store import load_run

    run = load_run(path)
    backbone = run.model.backbone
    parent = run.info.get("lineage", [])
    # How to rebuild this architecture without the parent run (weights come from the child's own file).
    root = backbone.meta.extra.get("rebuild_spec", backbone.meta.spec)
    backbone.meta.extra["rebuild_spec"] = root
    object.__setattr__(backbone.meta, "spec", f"run:{path}")
    object.__setattr__(backbone.meta, "source", "run")
    object.__setattr__(backbone.meta, "pretrained", True)
    backbone.lineage = [{"run": str(run.path), "backbone": run.config.backbone, "strategy": run.config.strategy,
                         "train": run.config.train}] + list(parent)
    return backbone
