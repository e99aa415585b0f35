"""The exported computation: a run's whole model as one ``nn.Module`` from raw inputs to probabilities.

Images enter as uint8 [N, 3, S, S] at the run's input size and are normalised inside the graph (the feature
engines' :class:`~transferkit.features.runtimes._ExportedImage`); text enters as token ids and attention mask
(:class:`~transferkit.features.runtimes._ExportedText`), a hybrid run's TF-IDF branch as a second pair of inputs,
``term_ids`` / ``term_mask`` (ids of its vocabulary's word 1-2 grams, one per occurrence): the graph counts them,
applies sublinear tf, idf and the l2 norm, as the run does. The output is the softmax of the logits for
classification, the prediction in the target's units for regression.

:class:`GraphInput` says, for each input pair, its names, dtype and dynamic axes, and turns a dataset into the
arrays those inputs take (the same tokenizers and image decoding the run uses).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones.base import ImagePreprocessor
from ..baselines.tfidf import TfidfFeaturiser
from ..data.dataset import Dataset
from ..engine.model import TransferModel
from ..errors import ConfigError
from ..features.runtimes import GraphSpec, _ExportedImage, _ExportedText

PROBABILITIES = "probabilities"
PREDICTION = "prediction"


@dataclass(frozen=True)
class GraphInput:
    """One group of graph inputs: ``names`` with ``dtype``, each with ``axes`` (axis -> dimension name)."""

    kind: str  # "images" | "tokens" | "terms"
    names: tuple[str, ...]
    dtype: str
    axes: dict[int, str]
    preprocess: Any  # ImagePreprocessor, or a tokenizer (texts -> {"input_ids", "attention_mask"})
    max_size: int | None = None  # the largest length of a token axis (the position embeddings')

    def arrays(self, ds: Dataset) -> list[np.ndarray]:
        """This group's inputs for every row of ``ds`` (texts padded to the longest row)."""
        if self.kind == "images":
            from ..data.images import ImageStore

            return [ImageStore(ds, self.preprocess, progress=False).batch(np.arange(len(ds))).numpy()]
        batch = self.preprocess(list(ds.inputs))
        return [batch["input_ids"].numpy(), batch["attention_mask"].numpy()]

    def describe(self) -> dict[str, Any]:
        """Names, dtype and shape of each input, for ``preprocessing.json`` and the model card."""
        shape: list[Any] = ["batch", 3, self.preprocess.size, self.preprocess.size] if self.kind == "images" \
            else ["batch", self.axes[1]]
        out = {n: {"dtype": self.dtype, "shape": shape} for n in self.names}
        if self.kind == "images":
            out[self.names[0]].update(self.preprocess.describe(), normalised_in_graph=True)
        elif self.max_size:
            for n in self.names:
                out[n]["max_length"] = self.max_size
        return out


def _image_input(pre: ImagePreprocessor) -> GraphInput:
    return GraphInput("images", ("images",), "uint8", {0: "batch"}, pre)


def _token_input(backbone: Any) -> GraphInput:
    top = backbone.meta.max_length
    return GraphInput("tokens", ("input_ids", "attention_mask"), "int64", {0: "batch", 1: "length"},
                      backbone.preprocess, int(top) if top else None)


def _term_input(tfidf: TfidfFeaturiser) -> GraphInput:
    return GraphInput("terms", ("term_ids", "term_mask"), "int64", {0: "batch", 1: "terms"}, tfidf.preprocess)


def graph_inputs(model: TransferModel) -> list[GraphInput]:
    """The input groups of ``model``: its backbone's, then its lexical branch's (a hybrid run).

    Raises:
        ConfigError: a model with two TF-IDF parts (it has no one vocabulary for ``term_ids``).
    """
    b = model.backbone
    if isinstance(b.preprocess, ImagePreprocessor):
        groups = [_image_input(b.preprocess)]
    elif isinstance(b, TfidfFeaturiser):
        groups = [_term_input(b)]
    else:
        groups = [_token_input(b)]
    if model.lexical is not None:
        if groups[0].kind == "terms":
            raise ConfigError("This run has a TF-IDF backbone and a TF-IDF branch; an export takes one term "
                              "vocabulary. Refit with a neural backbone for --strategy hybrid.")
        groups.append(_term_input(model.lexical.tfidf))
    return groups


class ExportGraph(nn.Module):
    """``model`` from raw inputs to probabilities (classification) or predictions (regression), positional
    inputs in the order of :func:`graph_inputs`."""

    def __init__(self, model: TransferModel, task: str) -> None:
        super().__init__()
        self.model = model
        self.groups = graph_inputs(model)
        self.classify = task == "classification"
        first = self.groups[0]
        self.encode = _ExportedImage(model.backbone, False) if first.kind == "images" \
            else _ExportedText(model.backbone)

    def forward(self, a: torch.Tensor, b: torch.Tensor | None = None, c: torch.Tensor | None = None,
                d: torch.Tensor | None = None) -> torch.Tensor:
        """Up to four positional inputs (not ``*xs``: ``torch.export`` takes varargs as one input)."""
        xs = [x for x in (a, b, c, d) if x is not None]
        width = len(self.groups[0].names)
        out = self.model.head(self.encode(*xs[:width]))
        if self.model.lexical is not None:
            ids, mask = xs[width:width + 2]
            lex = self.model.lexical
            out = out + lex.linear(lex.tfidf({"input_ids": ids, "attention_mask": mask})).to(out.dtype)
        if self.classify:
            return torch.softmax(out, dim=-1)
        return out[:, 0] * self.model.target_std + self.model.target_mean

    @property
    def output_name(self) -> str:
        return PROBABILITIES if self.classify else PREDICTION

    def input_names(self) -> list[str]:
        return [n for g in self.groups for n in g.names]

    def spec(self, ds: Dataset) -> GraphSpec:
        """What the exporter needs, with example inputs from ``ds``: its two shortest rows, with padding (mask 0)
        in the second row's last position of each token group (so the traced graph has seen padding) and every
        dynamic axis at least 2 wide (export specialises 0 and 1) but no wider than the texts."""
        lengths = np.zeros(len(ds))
        if ds.modality == "text":
            lengths = np.array([len(t) for t in ds.inputs])
        rows = ds.subset(np.argsort(lengths, kind="stable")[:2])
        if len(rows) < 2:
            rows = ds.subset([0, 0])
        xs: list[torch.Tensor] = []
        for g in self.groups:
            arrays = [torch.from_numpy(np.ascontiguousarray(a)) for a in g.arrays(rows)]
            if g.kind != "images" and arrays[0].shape[1] < 2:
                arrays = [torch.cat([a, torch.zeros_like(a[:, :1])], 1) for a in arrays]
            elif g.kind != "images":
                for a in arrays:
                    a[1, -1] = 0  # a padding position (id 0, mask 0)
            xs += arrays
        axes = [dict(g.axes) for g in self.groups for _ in g.names]
        tops = {g.axes[1]: max(g.max_size, 2) for g in self.groups if g.kind == "tokens" and g.max_size}
        return GraphSpec(self.input_names(), tuple(xs), axes, [self.output_name], tops)


__all__ = ["PREDICTION", "PROBABILITIES", "ExportGraph", "GraphInput", "graph_inputs"]
