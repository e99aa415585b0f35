"""Run integrity: ``run.json`` records the SHA-256 and size of every file of the run (``files``); loading a run
checks them and names the file that is missing or damaged.

Runs written before the manifest existed have no ``files`` key and load unchecked.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..errors import DataError

RUN_MARKER = "run.json"
MANIFEST = "files"
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def run_files(directory: Path) -> list[Path]:
    """Every regular file of a run folder except ``run.json`` itself, sorted (symlinks are not followed)."""
    out = []
    for p in sorted(directory.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.relative_to(directory).as_posix() != RUN_MARKER:
            out.append(p)
    return out


def digests(directory: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256": hex, "bytes": size}}`` of the run's files."""
    return {p.relative_to(directory).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in run_files(directory)}


def read_run_json(directory: Path) -> dict[str, Any]:
    """``run.json`` of a run folder, or a one-line DataError naming the file and what is wrong."""
    p = directory / RUN_MARKER
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"'{directory}' is not a complete run: {p} is missing (an interrupted fit leaves none). "
                        "Fit again, or list unfinished runs with `transferkit runs list`.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"Run file '{p}' is damaged (not valid JSON: {e}). Restore the run folder from a backup "
                        "or fit again.") from None
    if not isinstance(info, dict):
        raise DataError(f"Run file '{p}' is damaged (a JSON {type(info).__name__}, not an object). Restore the "
                        "run folder from a backup or fit again.")
    return info


def seal(directory: Path) -> None:
    """Add the manifest of the folder's files to its ``run.json`` (a folder without one is left alone)."""
    p = directory / RUN_MARKER
    if not p.exists():
        return
    info = read_run_json(directory)
    info[MANIFEST] = digests(directory)
    write_json_atomic(p, info)


def verify(directory: Path, info: dict[str, Any] | None = None, hashes: bool = True) -> None:
    """Check every file the manifest lists: present, same size, same SHA-256 (``hashes=False``: sizes only).

    Raises:
        DataError: naming the first missing or damaged file (or a damaged ``run.json``).
    """
    info = read_run_json(directory) if info is None else info
    manifest = info.get(MANIFEST)
    if manifest is None:
        return  # a run from before the manifest
    if not isinstance(manifest, dict):
        raise DataError(f"Run file '{directory / RUN_MARKER}' is damaged (its '{MANIFEST}' entry is not a mapping). "
                        "Restore the run folder from a backup or fit again.")
    for rel, want in manifest.items():
        p = directory / rel
        if not p.is_file():
            raise DataError(f"Run '{directory}' is damaged: '{rel}' is missing (run.json lists it). Restore the run "
                            "folder from a backup or fit again.")
        if not isinstance(want, dict) or p.stat().st_size != want.get("bytes") or (
                hashes and sha256_file(p) != want.get("sha256")):
            raise DataError(f"Run '{directory}' is damaged: '{rel}' differs from the SHA-256 recorded in run.json "
                            "(changed or truncated after the run was written). Restore the run folder from a backup "
                            "or fit again.")
