"""``--format onnx`` / ``onnx-int8``: the run as one ONNX graph (:class:`~transferkit.export.graph.ExportGraph`),
exported with the feature engines' exporter (:func:`~transferkit.features.runtimes.export_onnx`: dynamo first for
images, TorchScript first for text) and, for int8, dynamically quantised like the ``onnx-int8`` engine
(:func:`~transferkit.features.runtimes.quantize_int8`: MatMul / Gemm weights int8 per channel; convolutions stay
float).

The folder: ``model.onnx`` (labels, task and inputs also in its metadata), ``labels.json``, ``preprocessing.json``
(every input's name, dtype, shape and preprocessing) and the files that build the inputs (a tokenizer, a term
vocabulary: :mod:`transferkit.export.input_files`).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..data.dataset import Dataset
from ..features.runtimes import export_onnx, quantize_int8
from ..runs.store import LoadedRun
from .graph import ExportGraph, graph_inputs
from .input_files import input_files
from .parity import EXACT, ParityRule

MODEL = "model.onnx"
LABELS = "labels.json"
PREPROCESSING = "preprocessing.json"


def _stamp(path: Path, meta: dict[str, str]) -> None:
    """Add ``meta`` to the model's metadata (``session.get_modelmeta().custom_metadata_map``)."""
    import onnx

    model = onnx.load(str(path))
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))


def session(path: Path) -> Any:
    """A CPU ONNX Runtime session with as many intra-op threads as torch uses."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _exporter_for(graph: ExportGraph) -> str:
    """Dynamo for images (a faster graph) and for ``nn.TransformerEncoderLayer`` (the TorchScript exporter has no
    ONNX form of its fused inference op, and its failed attempt prints the whole graph); TorchScript for other text
    (seconds instead of ~15 s)."""
    if graph.groups[0].kind == "images" or any(isinstance(m, nn.TransformerEncoderLayer) for m in graph.modules()):
        return "dynamo"
    return "torchscript"


def _usage(run: LoadedRun, details: dict[str, Any]) -> str:
    out = details["output"]
    shape = "[N, classes]: columns in labels.json order" if out == "probabilities" else "[N], in the target's units"
    steps = "\n".join(input_files(g.preprocess).snippet(g.preprocess) for g in graph_inputs(run.model))
    return (f'import onnxruntime as ort\n\nEXPORT_DIR = "path/to/this/folder"\nfeeds = {{}}\n\n{steps}\n'
            f'session = ort.InferenceSession(f"{{EXPORT_DIR}}/{MODEL}", providers=["CPUExecutionProvider"])\n'
            f'{out} = session.run(["{out}"], feeds)[0]  # {shape}\n')


@dataclass(frozen=True)
class OnnxFormat:
    """The ONNX formats (see the module docstring)."""

    name: str
    quantize: bool
    rules: dict[str, ParityRule]

    def check(self, run: LoadedRun) -> None:
        """Every input group of the run is exportable and its preprocessing can be saved (else ConfigError)."""
        for g in graph_inputs(run.model):
            input_files(g.preprocess)

    def write(self, run: LoadedRun, folder: Path, samples: Dataset, say: Callable[[str], None]) -> dict[str, Any]:
        task = "classification" if run.label_map is not None else "regression"
        graph = ExportGraph(run.model, task).eval()
        groups = graph.groups
        target = folder / MODEL
        fp32 = folder / "model.fp32.onnx" if self.quantize else target
        say(f"exporting {run.model.backbone.meta.spec} and its head to ONNX")
        exporter = export_onnx(graph, graph.spec(samples), fp32, prefer=_exporter_for(graph))
        if self.quantize:
            say("quantising MatMul / Gemm weights to int8")
            quantize_int8(fp32, target)
            fp32.unlink()
        inputs = {k: v for g in groups for k, v in g.describe().items()}
        _stamp(target, {"transferkit.version": __version__, "transferkit.format": self.name,
                        "transferkit.task": task, "transferkit.output": graph.output_name,
                        "transferkit.labels": json.dumps(run.labels, default=str),
                        "transferkit.inputs": json.dumps(inputs, default=str)})
        files = [MODEL, LABELS, PREPROCESSING]
        for g in groups:
            files += input_files(g.preprocess).save(g.preprocess, folder)
        (folder / LABELS).write_text(json.dumps(run.labels, indent=1, default=str), encoding="utf-8")
        (folder / PREPROCESSING).write_text(json.dumps({"inputs": inputs, "output": graph.output_name},
                                                       indent=1, default=str), encoding="utf-8")
        return {"exporter": exporter, "inputs": inputs, "output": graph.output_name, "files": files,
                "quantized": "int8 MatMul/Gemm weights, per channel (dynamic)" if self.quantize else None}

    def predict(self, run: LoadedRun, folder: Path, ds: Dataset) -> np.ndarray:
        """The written graph run by ONNX Runtime, its inputs built from the written files."""
        feeds: dict[str, np.ndarray] = {}
        for g in graph_inputs(run.model):
            saved = dataclasses.replace(g, preprocess=input_files(g.preprocess).load(folder, g.preprocess))
            feeds.update(zip(g.names, saved.arrays(ds)))
        return session(folder / MODEL).run(None, feeds)[0]

    def usage(self, run: LoadedRun, details: dict[str, Any]) -> str:
        return _usage(run, details)


ONNX = OnnxFormat("onnx", False, EXACT)
# int8 weights move probabilities by more than float rounding: judged by the label (regression: within a tenth
# of the target's standard deviation).
ONNX_INT8 = OnnxFormat("onnx-int8", True, {"classification": ParityRule(min_top1=0.9),
                                           "regression": ParityRule(max_abs_diff=0.1)})

__all__ = ["LABELS", "MODEL", "ONNX", "ONNX_INT8", "PREPROCESSING", "OnnxFormat", "session"]
