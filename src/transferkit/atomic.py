"""Atomic JSON files: written to a private temp file, flushed to disk, then renamed over the target, so a reader
(or a crash) sees the old file or the new one, never half of one. Light on purpose (no torch, no numpy import):
the run store and run integrity use it on every `transferkit runs` call."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def plain(o: Any) -> Any:
    """JSON for NumPy / torch scalars and arrays, and paths."""
    if hasattr(o, "item") and getattr(o, "ndim", 1) == 0:
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, default=plain)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
