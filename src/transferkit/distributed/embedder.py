"""What a feature-extraction worker runs: a picklable job description and an ``Embedder`` that loads the backbone
and the data once, then computes the features of any row range with the chosen engine (eager, onnx, ...).

``Embedder.__call__(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]`` is the batch interface of Ray Data's
``map_batches`` (and of Spark's ``predict_batch_udf``): each input row names a shard (``shard``, ``start``,
``stop``); each output row is one data row (``shard``, ``row``, ``features``, and the worker's ``weights`` hash).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backbones.base import Backbone
from ..data.dataset import Dataset


@dataclass(frozen=True)
class FeatureJob:
    """Everything a worker needs, nothing loaded: the data, the backbone (a spec or a saved run), the engine.

    Paths must be readable by every worker (on a cluster: a shared file system, or the same path on each node).
    """

    data: str
    backbone: str | None = None
    run: str | None = None
    text_column: str | None = None
    image_column: str | None = None
    label_column: str = "label"
    id_column: str | None = None
    labelled: bool = True
    image_size: int | None = None
    max_length: int | None = None
    seed: int = 0  # initialisation of scratch backbones: every worker builds the same weights
    engine: str = "eager"
    batch_size: int = 64
    threads: int | None = None  # torch threads of each worker (None: torch's default, all cores)

    def load_backbone(self) -> Backbone:
        if self.run:
            from ..runs import load_run

            return load_run(self.run).model.backbone
        from ..backbones import create_backbone

        seed = self.seed if str(self.backbone).startswith("scratch:") else None
        return create_backbone(self.backbone, image_size=self.image_size, max_length=self.max_length, seed=seed)

    def load_data(self) -> Dataset:
        from ..data import Columns, load_path

        cols = Columns(self.text_column, self.image_column, self.label_column, self.id_column)
        return load_path(self.data, cols, labelled=self.labelled)


def job_identity(backbone: Backbone, ds: Dataset, engine: str) -> dict[str, Any]:
    """What makes two shards parts of one extraction: backbone, weights, preprocessing, engine, the data's rows."""
    from ..features.identity import weights_hash
    from ..features.runtimes import engine_identity

    ids = hashlib.sha256("\n".join(map(str, ds.ids)).encode()).hexdigest()[:24]
    return {"spec": backbone.meta.spec, "weights": weights_hash(backbone), "pre": backbone.describe_preprocessing(),
            "engine": engine_identity(engine), "rows": len(ds), "ids": ids, "dim": backbone.meta.feature_dim}


def labels_of(ds: Dataset) -> np.ndarray | None:
    """Labels as `transferkit features` writes them (strings), None for unlabelled data."""
    return None if ds.y is None else np.asarray([str(v) for v in ds.y])


class Embedder:
    """Loads ``job``'s backbone and data once; :meth:`rows` computes features of a row range.

    Args:
        job: what to load.
        backbone, ds: already loaded ones (a single process that has them), else loaded from ``job``.
    """

    def __init__(self, job: FeatureJob, backbone: Backbone | None = None, ds: Dataset | None = None) -> None:
        import torch

        from ..features.runtimes import get_runtime

        if job.threads:
            torch.set_num_threads(int(job.threads))
        self.job = job
        self.backbone = (backbone if backbone is not None else job.load_backbone()).eval()
        self.ds = ds if ds is not None else job.load_data()
        self.runtime = get_runtime(self.backbone, job.engine)
        from ..features.identity import weights_hash

        self.weights = weights_hash(self.backbone)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Features [stop - start, D] of rows [start, stop) in order."""
        from ..features.extract import extract_features
        from ..features.inputs import Inputs

        sub = self.ds.subset(np.arange(start, stop))
        return extract_features(self.backbone, Inputs(sub, self.backbone), self.job.batch_size, progress=False,
                                engine=self.runtime)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shards, rows, feats = [], [], []
        for k, start, stop in zip(batch["shard"], batch["start"], batch["stop"]):
            f = self.rows(int(start), int(stop))
            shards.append(np.full(len(f), int(k), dtype=np.int64))
            rows.append(np.arange(int(start), int(stop), dtype=np.int64))
            feats.append(f)
        dim = self.backbone.meta.feature_dim
        n = sum(len(r) for r in rows)
        return {"shard": np.concatenate(shards) if shards else np.empty(0, np.int64),
                "row": np.concatenate(rows) if rows else np.empty(0, np.int64),
                "features": np.concatenate(feats) if feats else np.empty((0, dim), np.float32),
                "weights": np.asarray([self.weights] * n)}
