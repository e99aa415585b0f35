"""Small helpers shared by the benchmark scripts: timestamped log lines, atomic JSON records, paired intervals,
the offline environment and command line of a ``transferkit`` subprocess."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def offline_env(threads: int, **extra: str) -> dict[str, str]:
    """This process's environment for a ``transferkit`` subprocess: offline (no hub downloads), ``threads`` BLAS /
    OpenMP threads, plus ``extra`` variables."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", **extra}


def cli_command(*args: Any) -> list[str]:
    """``python -m transferkit.cli.main --quiet ARGS`` with this interpreter."""
    return [sys.executable, "-m", "transferkit.cli.main", "--quiet", *map(str, args)]


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` through a temp file (an interrupted benchmark never leaves half a record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float), encoding="utf-8")
    tmp.replace(path)


def t_interval(diffs: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% t-interval (None for one seed)."""
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, None
    from scipy import stats

    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
