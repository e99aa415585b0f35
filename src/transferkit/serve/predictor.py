"""The served model: a run loaded once, its backbone run by the chosen engine, raw outputs turned into labels.

Every engine goes through :func:`~transferkit.engine.loop.predict_outputs` and
:func:`~transferkit.runs.predict.decode_outputs`, the code ``transferkit predict`` uses, so eager answers equal
:func:`~transferkit.runs.predict.predict_dataset`'s; other engines run the backbone through
:func:`~transferkit.features.runtimes.get_runtime` (checked against eager on the warm-up batch) and the run's head
after it. Every method except :meth:`Predictor.format` and :meth:`Predictor.describe` runs in the model thread.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..backbones.base import ImagePreprocessor
from ..data import Dataset
from ..engine.loop import predict_outputs
from ..features.inputs import Inputs
from ..features.runtimes import Runtime, get_runtime
from ..runs import load_run
from ..runs.predict import decode_outputs
from ..runs.store import LoadedRun


def _scalars(d: Any) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_metrics(path: Path) -> dict[str, dict[str, float]]:
    """The scalar test / validation metrics of ``metrics.json`` beside a run (empty when unreadable)."""
    try:
        m = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(m, dict):
        return {}
    return {part: _scalars(m[part]) for part in ("test", "val") if isinstance(m.get(part), dict)}


class Predictor:
    """One loaded run and its engine.

    Args:
        run: a run folder written by ``transferkit fit``, or a loaded run.
        engine: the backbone's extraction engine (see :mod:`transferkit.features.runtimes`).
        batch_size: most inputs per forward pass (a larger micro-batch is split).
    """

    def __init__(self, run: str | Path | LoadedRun, engine: str = "eager", batch_size: int = 32) -> None:
        self.run = run if isinstance(run, LoadedRun) else load_run(run)
        self.engine, self.batch_size = engine, batch_size
        backbone = self.run.model.backbone
        self.runtime: Runtime | None = None if engine == "eager" else get_runtime(backbone, engine)
        self.preprocess = backbone.preprocess
        self.labels = self.run.label_map.classes if self.run.label_map is not None else None
        self.metrics = run_metrics(self.run.path)

    @property
    def modality(self) -> str:
        return self.run.modality

    @property
    def image_preprocessor(self) -> ImagePreprocessor | None:
        return self.preprocess if isinstance(self.preprocess, ImagePreprocessor) else None

    # -- model thread ------------------------------------------------------------------------------------------
    def dataset(self, items: list[Any]) -> Dataset:
        """Texts, or decoded uint8 images [3, S, S] at the backbone's size, as an unlabelled dataset."""
        if self.modality == "image":
            return Dataset("image", np.stack(items), None, origin="request", value_max=255.0)
        return Dataset("text", list(items), None, origin="request")

    def outputs(self, items: list[Any]) -> np.ndarray:
        """Raw head outputs [N, C] for ``items`` (texts or decoded images), in order."""
        inputs = Inputs(self.dataset(items), self.run.model.backbone)
        return predict_outputs(self.run.model, inputs, self.batch_size, runtime=self.runtime)

    def warm_up(self) -> None:
        """One prediction on a blank input: exports / checks the engine before the first request."""
        if self.modality == "image":
            s = self.preprocess.size
            self.outputs([np.zeros((3, s, s), dtype=np.uint8)])
        else:
            self.outputs(["warm up"])

    # -- event loop --------------------------------------------------------------------------------------------
    def format(self, out: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """Per input: the label, its probability and the ``top_k`` best labels (regression: the value)."""
        decoded = decode_outputs(self.run, out, top_k)
        if self.labels is None:
            return [{"prediction": v} for v in decoded]
        rows = []
        for best in decoded:
            top = [{"label": label, "probability": p} for label, p in best]
            rows.append({"label": top[0]["label"], "probability": top[0]["probability"], "top_k": top})
        return rows

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` shows: labels, metrics, lineage, modality, engine."""
        run, meta = self.run, self.run.model.backbone.meta
        engine: dict[str, Any] = {"name": self.engine}
        if self.runtime is not None:
            engine.update(self.runtime.record())
        inputs: dict[str, Any] = ({"image_size": self.preprocess.size} if self.image_preprocessor is not None
                                  else {"max_length": meta.max_length})
        return {"run": run.path.name, "modality": self.modality, "task": run.labels.get("task", "classification"),
                "labels": self.labels, "engine": engine, "backbone": meta.spec, "strategy": run.config.strategy,
                "input": inputs, "metrics": self.metrics, "lineage": run.info.get("lineage", []),
                "created": run.info.get("created")}
