"""The export formats: a registry of :class:`ExportFormat` objects, registered by reference so that listing them
(``transferkit export --help``) imports neither torch nor ONNX."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..data.dataset import Dataset
    from ..runs.store import LoadedRun
    from .parity import ParityRule


class ExportFormat(Protocol):
    """One way to export a run.

    ``check`` refuses a run the format cannot express (a one-line ``ConfigError`` naming the format that works);
    ``write`` puts the model and what loading it needs into an empty folder and returns facts for the model card
    (``inputs``, ``outputs``, ``files``, ...); ``predict`` runs the written folder with the format's own runtime
    (ONNX Runtime, transformers) on a dataset, for the parity check, which ``rules`` judges; ``usage`` is the model
    card's loading snippet.
    """

    name: str
    rules: dict[str, ParityRule]  # by task: "classification", "regression"

    def check(self, run: LoadedRun) -> None: ...

    def write(self, run: LoadedRun, folder: Path, samples: Dataset, say: Callable[[str], None]) -> dict[str, Any]: ...

    def predict(self, run: LoadedRun, folder: Path, ds: Dataset) -> np.ndarray: ...

    def usage(self, run: LoadedRun, details: dict[str, Any]) -> str: ...


FORMATS: Registry[ExportFormat] = Registry("export format", " Choose one with --format, e.g. --format onnx.")
FORMATS.register_lazy("onnx", "transferkit.export.onnx_format:ONNX",
                      "one ONNX graph from raw input (uint8 images / token ids) to probabilities, fp32")
FORMATS.register_lazy("onnx-int8", "transferkit.export.onnx_format:ONNX_INT8",
                      "the onnx graph with dynamically quantised int8 MatMul/Gemm weights")
FORMATS.register_lazy("hf", "transferkit.export.hf_format:HF",
                      "a transformers sequence-classification folder (text runs of [CLS]-pooled BERT encoders)")

__all__ = ["FORMATS", "ExportFormat"]
