"""On-disk feature cache. Key = backbone spec + weights hash + preprocessing + data content hash."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from ..backbones.base import Backbone
from .extract import extract_features
from .identity import default_cache_dir, weights_hash
from .inputs import Inputs
from .runtimes import engine_identity, get_runtime

log = logging.getLogger("transferkit")


class FeatureCache:
    """Frozen features keyed by everything that determines them; atomic writes."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True, engine: str = "eager") -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled
        self.engine = engine  # feature-extraction engine for misses (eager | compiled | onnx | onnx-int8)
        self.engine_records: list[dict] = []  # what each extraction ran, with its parity against eager
        self.hits = 0
        self.misses = 0

    def key(self, backbone: Backbone, inputs: Inputs, kind: str = "features", engine: str = "eager") -> str:
        parts = {"spec": backbone.meta.spec, "weights": weights_hash(backbone), "kind": kind,
                 "pre": backbone.describe_preprocessing(), "data": inputs.ds.content_hash()}
        if backbone.meta.extra.get("pooling", "mean") != "mean":  # mean-pooled keys stay as they were
            parts["pooling"] = backbone.meta.extra["pooling"]
        if engine != "eager":  # eager keys stay as they were, so existing caches still hit
            parts["engine"] = engine_identity(engine)
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def get_or_compute(self, backbone: Backbone, inputs: Inputs, batch_size: int = 64, desc: str = "features",
                       source_logits: bool = False, progress: bool = True, engine: str | None = None) -> np.ndarray:
        kind = "source_logits" if source_logits else "features"
        engine = engine or self.engine
        path = self.root / f"{self.key(backbone, inputs, kind, engine)}.npy" if self.enabled else None
        if path is not None and path.exists():
            try:
                feats = np.load(path, allow_pickle=False)
                if feats.shape[0] == len(inputs):
                    self.hits += 1
                    return feats
            except (OSError, ValueError, EOFError):
                pass  # a corrupt or truncated entry is recomputed and replaced
        self.misses += 1
        run = get_runtime(backbone, engine, source_logits)
        feats = extract_features(backbone, inputs, batch_size, desc, source_logits, progress, engine=run)
        self.engine_records.append(run.record())
        if path is not None:
            self._store(path, feats)
        return feats

    @staticmethod
    def _store(path: Path, feats: np.ndarray) -> None:
        """Write an entry atomically (a private temp file renamed into place, so concurrent writers of one entry
        each replace it whole). A failed write (full disk, read-only cache) only costs the cache: a warning."""
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, feats, allow_pickle=False)
            os.replace(tmp, path)
        except OSError as e:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            log.warning("feature cache entry %s not written (%s); features are kept in memory only", path, e)
