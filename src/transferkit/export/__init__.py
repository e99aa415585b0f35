"""Exporting a run for serving elsewhere: ``export_run(RUN, "onnx" | "onnx-int8" | "hf")`` writes a folder with the
model, the files that build its inputs, a parity check against the run (parity.json) and a model card (README.md).
"""
from __future__ import annotations

from .api import ExportResult, export_run
from .formats import FORMATS

__all__ = ["FORMATS", "ExportResult", "export_run"]
