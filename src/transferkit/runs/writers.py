"""Write prediction rows as CSV or JSON, atomically."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def write_rows(rows: list[dict[str, Any]], output: str | None) -> None:
    if output is None:
        _csv(rows, sys.stdout)
        return
    p = Path(output)
    if p.suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"Output '{p}' must end in .csv or .json.")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            if p.suffix.lower() == ".json":
                json.dump(rows, f, indent=1)
            else:
                _csv(rows, f)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # nothing half-written
        raise


def _csv(rows: list[dict[str, Any]], f: io.TextIOBase) -> None:
    if not rows:
        return
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
