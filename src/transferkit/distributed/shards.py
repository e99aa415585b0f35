"""The shard files of a feature extraction, and their merge into the single-process file.

Layout of an output directory ``OUT/``::

    OUT/shards/part-00003-of-00008.parquet   rows [3n/8, 4n/8) of the data: id, [label], f0..fD-1
    OUT/features.parquet                     every shard in row order: what `transferkit features -o F.parquet` writes

A shard is written to a hidden temporary file and renamed when complete, so a shard file that exists is whole
(and ``pandas.read_parquet("OUT/shards")`` reads only complete ones). Its Parquet metadata holds the job's
identity (backbone spec, weights hash, preprocessing, engine, the data's row count and ids hash): a shard of
another job is refused, never mixed in, and an existing shard of the same job is not computed again.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

SHARDS = "shards"
MERGED = "features.parquet"
META_KEY = b"transferkit"
_PART = re.compile(r"^part-(\d{5})-of-(\d{5})\.parquet$")


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def rows(self, n: int) -> tuple[int, int]:
        """The contiguous row range [start, stop) of this shard of ``n`` rows."""
        return n * self.index // self.count, n * (self.index + 1) // self.count

    def path(self, out: Path) -> Path:
        return Path(out) / SHARDS / f"part-{self.index:05d}-of-{self.count:05d}.parquet"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> ShardSpec:
    """``"i/N"`` (0 <= i < N) as a :class:`ShardSpec`.

    Raises:
        ConfigError: anything else.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if m is None or not int(m.group(1)) < int(m.group(2)) or int(m.group(2)) > 99999:
        raise ConfigError(f"--shard must be I/N with 0 <= I < N <= 99999 (e.g. 0/4), got {text!r}.")
    return ShardSpec(int(m.group(1)), int(m.group(2)))


def frame(ids: Sequence[Any], labels: np.ndarray | None, features: np.ndarray) -> Any:
    """The table `transferkit features -o F.parquet` writes: id, label (when labelled), f0..fD-1."""
    import pandas as pd

    df = pd.DataFrame(np.asarray(features, dtype=np.float32), columns=[f"f{i}" for i in range(features.shape[1])])
    df.insert(0, "id", list(ids))
    if labels is not None:
        df.insert(1, "label", labels)
    return df


def _write_parquet(df: Any, path: Path, meta: dict[str, Any] | None = None) -> None:
    """``df`` to ``path`` atomically (a hidden temporary file beside it, renamed), ``meta`` in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if meta is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_shard(out: Path, shard: ShardSpec, job: dict[str, Any], df: Any) -> Path:
    """Write one complete shard of ``job`` under ``out``."""
    path = shard.path(out)
    _write_parquet(df, path, {"job": job, "shard": shard.index, "of": shard.count, "rows": len(df)})
    return path


def shard_meta(path: Path) -> dict[str, Any] | None:
    """The metadata of the shard file at ``path``; None when it is missing or unreadable (it is redone)."""
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
        return json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None


def is_done(out: Path, shard: ShardSpec, job: dict[str, Any]) -> bool:
    """Whether ``shard`` of ``job`` is already complete under ``out``.

    Raises:
        ConfigError: the shard file there belongs to another job.
    """
    meta = shard_meta(shard.path(out))
    if meta is None:
        return False
    if meta.get("job") != job:
        raise ConfigError(_other_job(out, meta.get("job") or {}, job))
    return True


def _other_job(out: Path, found: dict[str, Any], job: dict[str, Any]) -> str:
    keys = sorted(k for k in set(found) | set(job) if found.get(k) != job.get(k))
    return (f"'{out}' holds feature shards of another extraction ({', '.join(keys)} differ); use another -o "
            "directory or delete that one.")


def merge_shards(out: Path) -> tuple[Path, int, int]:
    """Concatenate every shard under ``out`` in row order into ``out/features.parquet``; returns (path, rows,
    shards).

    Raises:
        DataError: no shards, shards of several splits (``of-N``) or jobs, a missing shard, a row count that
            does not add up.
    """
    out = Path(out)
    parts = sorted((int(m.group(1)), int(m.group(2)), p) for p in (out / SHARDS).glob("part-*.parquet")
                   if (m := _PART.match(p.name)))
    if not parts:
        raise DataError(f"No feature shards in '{out / SHARDS}'. Write them with `transferkit features ... "
                        f"-o {out}/ --shard I/N` (or --cluster ray) first.")
    counts = sorted({n for _, n, _ in parts})
    if len(counts) > 1:
        raise DataError(f"'{out / SHARDS}' mixes shards of {' and '.join(map(str, counts))}-way splits; keep one "
                        "split (delete the others) and merge again.")
    count = counts[0]
    missing = sorted(set(range(count)) - {i for i, _, _ in parts})
    if missing:
        shown = ", ".join(f"{i}/{count}" for i in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise DataError(f"Shards {shown} are missing in '{out / SHARDS}'; run `transferkit features ... --shard I/N` "
                        "for them, then merge again.")
    metas = [shard_meta(p) for _, _, p in parts]
    if any(m is None for m in metas):
        bad = next(p for (_, _, p), m in zip(parts, metas) if m is None)
        raise DataError(f"Shard '{bad}' is not a transferkit feature shard (or is damaged); delete it and run its "
                        "--shard again.")
    job = metas[0]["job"]
    for m in metas[1:]:
        if m["job"] != job:
            raise DataError(_other_job(out, m["job"], job))
    import pandas as pd

    df = pd.concat([pd.read_parquet(p) for _, _, p in parts], ignore_index=True)
    if len(df) != job.get("rows"):
        raise DataError(f"The shards in '{out / SHARDS}' hold {len(df)} rows but the data had {job.get('rows')}; "
                        "delete the shards and extract again.")
    path = out / MERGED
    _write_parquet(df, path)
    return path, len(df), count
