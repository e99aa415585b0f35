"""The teacher: a loaded classification run, checked against the data, and its outputs on the transfer set, computed
once and kept in the feature cache (kind ``source_logits``: a rerun on the same data reads them back)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbones.base import Backbone
from ..data import Dataset
from ..errors import ConfigError, DataError
from ..features.cache import FeatureCache
from ..features.inputs import Inputs
from ..runs.store import LoadedRun, is_pretrain_run, load_run


def load_teacher(path: str | Path) -> LoadedRun:
    """The teacher run at ``path``: a complete classification run (one-line errors otherwise)."""
    p = Path(path)
    if is_pretrain_run(p):
        raise ConfigError(f"Teacher '{p}' is a pretraining run (an encoder without a classifier), so it has no "
                          f"predictions to distil. Fit a classifier on it first (transferkit fit --backbone "
                          f"run:{p.as_posix()} --train LABELLED ...) and use that run as --teacher.")
    if not p.is_dir():
        raise DataError(f"Teacher run '{p}' does not exist (expected a run folder written by `transferkit fit`).")
    run = load_run(p)
    if run.label_map is None:
        raise ConfigError(f"Teacher '{p}' is a regression run; distillation needs a classification teacher.")
    return run


def check_data(teacher: LoadedRun, ds: Dataset, what: str) -> None:
    """The data must be of the teacher's modality, and their labels among the teacher's classes."""
    if ds.modality != teacher.modality:
        raise DataError(f"Teacher '{teacher.path}' takes {teacher.modality}s but the {what} ('{ds.origin}') are "
                        f"{ds.modality}s. Distil on data of the teacher's kind.")
    if ds.y is None:
        return
    known = {str(c) for c in teacher.label_map.classes}
    foreign = sorted({str(v.item() if isinstance(v, np.generic) else v) for v in ds.y} - known)
    if foreign:
        shown = ", ".join(repr(v) for v in foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        classes = ", ".join(map(str, teacher.label_map.classes[:20]))
        raise DataError(f"The {what} ('{ds.origin}') have labels the teacher '{teacher.path}' does not know: "
                        f"{shown} (its classes: {classes}). Distil on data of the teacher's label set.")


class TeacherView(Backbone):
    """The teacher run as a backbone whose source head is the whole run (head and any lexical branch), so the
    feature cache keys and stores its logits (``source_logits``) under the run's full weights."""

    def __init__(self, run: LoadedRun) -> None:
        super().__init__()
        self.model = run.model
        self.preprocess = run.model.backbone.preprocess
        meta = run.model.backbone.meta
        self.meta = dataclasses.replace(meta, spec=f"teacher:{meta.spec}", source_classes=len(run.label_map))

    def forward(self, batch: Any) -> torch.Tensor:
        return self.model.backbone(batch)

    def source_logits(self, batch: Any) -> torch.Tensor:
        return self.model(batch)


class _WithTexts(Inputs):
    """Batches that always carry the raw texts (a hybrid teacher's TF-IDF branch reads them)."""

    def batch(self, idx: np.ndarray, texts: bool = True) -> Any:
        return super().batch(idx, True)


def teacher_outputs(teacher: LoadedRun, ds: Dataset, cache: FeatureCache, features: bool = False,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The teacher's logits [N, C] on ``ds`` (and its pooled backbone features [N, D] when ``features``), computed
    once per (teacher weights, data) and read back from ``cache`` afterwards."""
    view = TeacherView(teacher).eval()
    inputs = _WithTexts(ds, teacher.model.backbone)
    logits = cache.get_or_compute(view, inputs, desc="teacher logits", source_logits=True, progress=progress,
                                  engine="eager")
    feats = None
    if features:
        feats = cache.get_or_compute(teacher.model.backbone, inputs, desc="teacher features", progress=progress,
                                     engine="eager")
    return logits.astype(np.float32, copy=False), feats


__all__ = ["TeacherView", "check_data", "load_teacher", "teacher_outputs"]
