"""Students: any backbone spec, a copy of the teacher, or the teacher's encoder cut to its first K transformer layers
(initialised from the teacher's fine-tuned weights, as DistilBERT: "we initialized our model from a few layers of
the teacher"). A cut encoder is an ordinary Hugging Face model with ``num_hidden_layers = K``: its run saves the
config under ``backbone_files/`` and rebuilds without the teacher."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from torch import nn

from ..backbones import create_backbone
from ..backbones.base import Backbone
from ..backbones.hf import HFImageBackbone, HFTextBackbone
from ..errors import ConfigError, TransferkitError, bad_param
from ..runs.store import LoadedRun
from .config import TEACHER_COPY

# (path of the layer list inside a Hugging Face model, config attribute holding its length)
_LAYER_LISTS = (("encoder.layer", "num_hidden_layers"), ("transformer.layer", "n_layers"),
                ("encoder.layers", "num_hidden_layers"), ("layers", "num_hidden_layers"))


def _get(module: nn.Module, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def transformer_layers(backbone: Backbone) -> tuple[str, str, int] | None:
    """(layer-list path, config attribute, number of layers) of a Hugging Face encoder backbone, else None."""
    if not isinstance(backbone, (HFTextBackbone, HFImageBackbone)):
        return None
    for path, attr in _LAYER_LISTS:
        layers = _get(backbone.model, path)
        if isinstance(layers, nn.ModuleList) and hasattr(backbone.model.config, attr):
            return path, attr, len(layers)
    return None


def check_layers(teacher: LoadedRun, k: int) -> int:
    """The teacher's number of transformer layers, after checking that keeping ``k`` of them makes a student."""
    found = transformer_layers(teacher.model.backbone)
    meta = teacher.model.backbone.meta
    if found is None:
        raise ConfigError(f"--student-layers keeps the first K layers of a transformer encoder, but teacher "
                          f"'{teacher.path}' has backbone '{meta.spec}' ({meta.extra.get('architecture', 'unknown')})"
                          ", which is not a Hugging Face transformer. Use --student SPEC instead.")
    n = found[2]
    if n < 2 or not 1 <= k <= n - 1:
        raise bad_param("DistillConfig", "student_layers",
                        f"an integer in [1, {n - 1}] (teacher '{teacher.path}' has {n} transformer layers)"
                        if n >= 2 else f"unused: teacher '{teacher.path}' has a single transformer layer", k)
    return n


def truncated_encoder(teacher: LoadedRun, k: int, max_length: int | None = None) -> Backbone:
    """A copy of the teacher's encoder with its first ``k`` transformer layers (embeddings and pooling kept)."""
    n = check_layers(teacher, k)
    source = teacher.model.backbone
    path, attr, _ = transformer_layers(source)
    model = copy.deepcopy(source.model)
    parent, _, leaf = path.rpartition(".")
    owner = _get(model, parent) if parent else model
    setattr(owner, leaf, nn.ModuleList(list(getattr(owner, leaf))[:k]))
    setattr(model.config, attr, k)
    meta = source.meta
    spec = f"{meta.spec}@layers={k}"
    if isinstance(source, HFTextBackbone):
        student: Backbone = HFTextBackbone(model, source.preprocess.tokenizer, spec, meta.source, True,
                                           max_length or meta.max_length, source.pooling, meta.licence)
    else:
        student = HFImageBackbone(model, source.processor, spec, meta.source, True, meta.input_size)
    student.meta = dataclasses.replace(student.meta, extra={
        **student.meta.extra, "files_dir": None,
        "truncated": {"teacher": str(teacher.path), "teacher_backbone": meta.spec, "layers": k, "of": n}})
    return student.eval()


def build_student(spec: str | None, teacher: LoadedRun, layers: int | None, image_size: int | None,
                  max_length: int | None, seed: int) -> Backbone:
    """The student backbone: ``layers`` of the teacher's encoder, a copy of the teacher (``spec='teacher'``), or a
    fresh backbone from ``spec``; a spec that cannot be built is a one-line ``ConfigError``."""
    tmeta = teacher.model.backbone.meta
    if tmeta.modality == "text":
        max_length = max_length or tmeta.max_length
    if layers is not None:
        return truncated_encoder(teacher, layers, max_length)
    if spec == TEACHER_COPY:
        return copy.deepcopy(teacher.model.backbone).eval()
    try:
        return create_backbone(spec, pretrained=True, image_size=image_size, max_length=max_length,
                               seed=seed if spec.startswith("scratch:") else None)
    except TransferkitError:
        raise
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, AttributeError, ImportError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"Student '{spec}' cannot be built ({type(e).__name__}: {first}). Check the spec "
                          "(see `transferkit info`).") from None


def copies_teacher_head(spec: str | None, layers: int | None) -> bool:
    """Whether the student starts from the teacher's head too (a cut or copied teacher: same feature width)."""
    return layers is not None or spec == TEACHER_COPY


__all__ = ["build_student", "check_layers", "copies_teacher_head", "transformer_layers", "truncated_encoder"]
