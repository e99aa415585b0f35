"""BENCHMARKS.md is shared by every benchmark script: each owns the block between its own markers."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def update_section(text: str, key: str) -> None:
    """Replace the block between <!-- KEY:start --> and <!-- KEY:end --> (append it if missing), atomically."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    old = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    i, j = old.find(start), old.find(end)
    new = old[:i] + block + old[j + len(end):] if 0 <= i < j else old.rstrip() + "\n\n" + block + "\n"
    fd, tmp = tempfile.mkstemp(dir=BENCHMARKS_MD.parent, prefix=".BENCHMARKS.", suffix=".md.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, BENCHMARKS_MD)
    except BaseException:
        os.unlink(tmp)
        raise
