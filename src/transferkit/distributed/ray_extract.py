"""Feature extraction on Ray: the data's shards run through Ray Data's ``map_batches`` on a pool of actors, each
actor an :class:`~transferkit.distributed.embedder.Embedder` (backbone loaded once per actor, the chosen engine;
the data set as this process listed and checked it, sent once through the object store). Shard descriptors travel
to the actors, which decode only their shards' rows, and features come back; this process writes each shard as
soon as its rows are in (so an interrupted extraction resumes shard by shard), then merges them.

Ray is optional: ``pip install 'transferkit[ray]'``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .embedder import FeatureJob, job_identity
from .extract import ExtractReport, save_rows
from .shards import ShardSpec, is_done, merge_shards

SHARD_ROWS = 4096  # rows per shard: the unit of resume and of work handed to an actor


def import_ray() -> Any:
    """``ray`` with Ray Data, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("--cluster ray needs Ray Data, which is not installed: pip install 'transferkit[ray]' "
                          "(or 'ray[data]>=2.10').") from None
    return ray


def extract_on_ray(job: FeatureJob, out: Path, actors: int | None = None, address: str | None = None,
                   shard_rows: int = SHARD_ROWS, progress: bool = False) -> ExtractReport:
    """Compute every missing shard of ``job`` under ``out`` on Ray, then merge them into ``out/features.parquet``.
    Each actor takes ``job.threads`` CPUs and torch threads (1 when unset).

    Args:
        actors: size of the actor pool (default: the cluster's CPUs / ``job.threads``).
        address: a Ray cluster to join ("auto": the one this machine belongs to); default: the Ray instance
            already started in this process, else a new local one (stopped again at the end).
        shard_rows: rows per shard (the same value resumes the same shards).

    Raises:
        ConfigError: Ray is not installed, ``actors`` or ``shard_rows`` is not positive.
        DataError: an actor's backbone weights differ from this process's (the workers see other files).
    """
    ray = import_ray()
    job = job if job.threads else dataclasses.replace(job, threads=1)
    for name, value in (("--actors", actors), ("--shard-rows", shard_rows)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}.")
    backbone, ds = job.load_backbone(), job.load_data()
    ident = job_identity(backbone, ds, job.engine)
    count = max(1, math.ceil(len(ds) / shard_rows))
    shards = [ShardSpec(k, count) for k in range(count)]
    report = ExtractReport(Path(out), count, len(ds), backbone.meta.feature_dim)
    todo = [s for s in shards if not is_done(out, s, ident)]
    report.skipped = sorted(set(range(count)) - {s.index for s in todo})
    if todo:
        started = not ray.is_initialized()
        with _ray_logs(progress):
            if started:
                ray.init(address=address, include_dashboard=False, log_to_driver=progress,
                         logging_level=logging.INFO if progress else logging.ERROR)
            try:
                _run_actors(ray, job, out, ident, ds, todo, actors, progress, report)
            finally:
                if started:
                    ray.shutdown()
    report.merged = merge_shards(out)[0]
    return report


@contextlib.contextmanager
def _ray_logs(progress: bool) -> Iterator[None]:
    """Ray's own INFO / WARNING lines (start-up, execution plans, "progress bars disabled") only with progress."""
    loggers = [logging.getLogger(n) for n in ("ray", "ray.data")]
    levels = [lg.level for lg in loggers]
    if not progress:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _run_actors(ray: Any, job: FeatureJob, out: Path, ident: dict[str, Any], ds: Any, todo: list[ShardSpec],
                actors: int | None, progress: bool, report: ExtractReport) -> None:
    from .embedder import Embedder

    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1) // job.threads))
    items = [{"shard": s.index, "start": s.rows(len(ds))[0], "stop": s.rows(len(ds))[1]} for s in todo]
    pool = ray.data.ActorPoolStrategy(size=min(actors, len(items)))
    results = (ray.data.from_items(items, override_num_blocks=len(items))
               # the listed and checked data go along (once, through the object store): no actor lists and opens
               # every file again
               .map_batches(Embedder, fn_constructor_args=(job, None, ds), batch_size=1, compute=pool,
                            num_cpus=job.threads))
    ctx = ray.data.DataContext.get_current()
    bars, ctx.enable_progress_bars = ctx.enable_progress_bars, progress
    try:
        _collect(results, out, ident, ds, {s.index: s for s in todo}, report)
    finally:
        ctx.enable_progress_bars = bars


def _collect(results: Any, out: Path, ident: dict[str, Any], ds: Any, by_index: dict[int, ShardSpec],
             report: ExtractReport) -> None:
    """Write each shard (of ``by_index``) as soon as all its rows came back from the actors."""
    got: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        bad = set(batch["weights"].tolist()) - {ident["weights"]}
        if bad:
            raise DataError(f"A Ray worker loaded other backbone weights ({min(bad)}, here "
                            f"{ident['weights']}); every node must see the same backbone files.")
        for k in np.unique(batch["shard"]):
            sel = batch["shard"] == k
            got.setdefault(int(k), []).append((batch["row"][sel], batch["features"][sel]))
            rows = np.concatenate([r for r, _ in got[int(k)]])
            start, stop = by_index[int(k)].rows(len(ds))
            if len(rows) == stop - start:  # the shard is in: write it now (resume unit)
                order = np.argsort(rows, kind="stable")
                if not np.array_equal(rows[order], np.arange(start, stop)):
                    raise DataError(f"Shard {by_index[int(k)]}: the Ray workers returned other rows than "
                                    f"{start}..{stop - 1}; extract again.")
                feats = np.concatenate([f for _, f in got.pop(int(k))])
                save_rows(out, by_index[int(k)], ident, ds, feats[order])
                report.computed.append(int(k))
