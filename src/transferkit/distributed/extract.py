"""Feature extraction in shards, scheduler-neutral: ``transferkit features ... -o OUT/ --shard I/N`` computes one
shard (any launcher runs the N copies: a bash loop, a Slurm array, a Kubernetes indexed Job); ``--merge`` joins
them. Ray runs the same shards with a pool of actors (:mod:`.ray_extract`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from .embedder import Embedder, FeatureJob, job_identity, labels_of
from .shards import ShardSpec, frame, is_done, write_shard


@dataclass
class ExtractReport:
    """What an extraction did: shards computed and skipped (already complete), the merged file if any."""

    out: Path
    shards: int
    rows: int
    dim: int
    computed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    merged: Path | None = None
    engine: dict[str, Any] | None = None  # the engine record (what ran, parity with eager) of this process

    def summary(self) -> str:
        where = self.merged if self.merged is not None else self.out / "shards"
        return (f"wrote {self.rows} x {self.dim} features to {where} ({self.shards} shard"
                f"{'s' if self.shards != 1 else ''}: {len(self.computed)} computed, {len(self.skipped)} already "
                "complete)")


def save_rows(out: Path, shard: ShardSpec, job: dict[str, Any], ds: Dataset, features: np.ndarray) -> Path:
    """Write shard ``shard`` of ``ds`` (its ids and labels, the given features) under ``out``."""
    start, stop = shard.rows(len(ds))
    labels = labels_of(ds)
    return write_shard(out, shard, job, frame(ds.ids[start:stop], None if labels is None else labels[start:stop],
                                              features))


def run_shard(job: FeatureJob, out: Path, shard: ShardSpec) -> ExtractReport:
    """Compute shard ``shard`` of ``job`` into ``out`` unless it is complete there already."""
    backbone, ds = job.load_backbone(), job.load_data()
    ident = job_identity(backbone, ds, job.engine)
    report = ExtractReport(Path(out), shard.count, len(ds), backbone.meta.feature_dim)
    if is_done(out, shard, ident):
        report.skipped.append(shard.index)
        return report
    emb = Embedder(job, backbone, ds)
    save_rows(out, shard, ident, ds, emb.rows(*shard.rows(len(ds))))
    report.computed.append(shard.index)
    report.engine = emb.runtime.record()
    return report
