"""The run store: a small index of a runs folder (``runs/.index.json``) for listing, filtering, sorting and
comparing runs without opening each folder.

Each entry is a run's summary (kind, created, settings flattened to dotted keys, scalar metrics, lineage) with the
``mtime_ns`` and size of its ``run.json``: :func:`refresh` re-reads only the runs whose ``run.json`` changed, adds
runs copied in by hand and drops removed ones, so the index is a cache that can always be rebuilt from the folders.
Writers update it when they commit a run (:func:`record`), under a lock, written atomically.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ..atomic import write_json_atomic
from ..errors import ConfigError, DataError
from .integrity import RUN_MARKER

log = logging.getLogger("transferkit")
INDEX = ".index.json"
VERSION = 1
CONFIG_FILES = ("config.yaml", "adapt.yaml", "pretrain.yaml")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"training": {"lr": 1e-3}}`` -> ``{"training.lr": 1e-3}`` (lists stay values)."""
    if not isinstance(d, dict):
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def _scalars(d: dict[str, Any], prefix: str = "") -> dict[str, float | int]:
    return {f"{prefix}{k}": v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _metrics(run: Path, info: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics: the test part as plain names (macro_f1, accuracy, ...), validation as ``val.NAME``."""
    try:
        m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        m = {}
    out = _scalars(m)  # adapt writes its metrics at the top level
    if isinstance(m.get("test"), dict):
        out.update(_scalars(m["test"]))
    if isinstance(m.get("val"), dict):
        out.update(_scalars(m["val"], "val."))
    after = info.get("heldout", {}).get("after") if isinstance(info.get("heldout"), dict) else None
    if isinstance(after, dict):  # a pretraining run: held-out masked-token accuracy and loss
        out.update(_scalars(after, "mlm."))
    return out


def _settings(run: Path) -> dict[str, Any]:
    for name in CONFIG_FILES:
        p = run / name
        if p.is_file():
            try:
                return flatten(yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader) or {})
            except (yaml.YAMLError, UnicodeDecodeError):
                return {}
    return {}


def summarise(run: Path) -> dict[str, Any] | None:
    """A run folder's index entry (None when it has no readable ``run.json``)."""
    marker = run / RUN_MARKER
    try:
        st = marker.stat()
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    lineage = info.get("lineage") or []
    return {"name": run.name, "mtime_ns": st.st_mtime_ns, "bytes": st.st_size,
            "kind": info.get("kind", "fit"), "created": info.get("created", ""), "seconds": info.get("seconds"),
            "status": info.get("status", ""), "settings": _settings(run), "metrics": _metrics(run, info),
            "parent": (lineage[0].get("run") if lineage and isinstance(lineage[0], dict) else None),
            "manifest": "files" in info}


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    fd = os.open(root / ".index.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(root: Path) -> dict[str, Any]:
    try:
        d = json.loads((root / INDEX).read_text(encoding="utf-8"))
        if isinstance(d, dict) and d.get("version") == VERSION and isinstance(d.get("runs"), dict):
            return d["runs"]
    except (OSError, ValueError):
        pass  # missing or damaged: rebuilt from the folders
    return {}


def _write(root: Path, runs: dict[str, Any]) -> None:
    try:
        write_json_atomic(root / INDEX, {"version": VERSION, "runs": runs})
    except OSError as e:  # a read-only runs folder still lists, just without caching
        log.warning("run index %s not written (%s)", root / INDEX, e)


def _is_run_dir(p: Path) -> bool:
    return not p.name.startswith(".") and (p / RUN_MARKER).is_file()


def refresh(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every run's entry, re-reading only runs whose ``run.json`` changed since the index was written."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise DataError(f"Runs folder '{root}' does not exist. Pass the --runs-dir your fits used.")
    with _locked(root):
        old = _read(root)
        new, changed = {}, False
        with os.scandir(root) as it:
            for e in it:
                if e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
                    continue
                try:
                    st = os.stat(os.path.join(e.path, RUN_MARKER))
                except OSError:
                    continue
                entry = old.get(e.name)
                if entry is None or entry["mtime_ns"] != st.st_mtime_ns or entry["bytes"] != st.st_size:
                    entry, changed = summarise(Path(e.path)), True
                if entry is not None:
                    new[e.name] = entry
        if changed or set(new) != set(old):
            _write(root, new)
    return [new[k] for k in sorted(new)]


def record(run: Path) -> None:
    """Add or replace one run's entry (called by the run lifecycle after a commit; never raises)."""
    try:
        root = run.parent
        with _locked(root):
            runs = _read(root)
            entry = summarise(run)
            if entry is None:
                runs.pop(run.name, None)
            else:
                runs[run.name] = entry
            _write(root, runs)
    except OSError as e:
        log.warning("run index of %s not updated (%s); `transferkit runs list` rebuilds it", run.parent, e)


def forget(run: Path) -> None:
    """Drop one run's entry (after ``runs rm``)."""
    try:
        with _locked(run.parent):
            runs = _read(run.parent)
            if runs.pop(run.name, None) is not None:
                _write(run.parent, runs)
    except OSError as e:
        log.warning("run index of %s not updated (%s)", run.parent, e)


# -- filter / sort --------------------------------------------------------------------------------------------
_COND = re.compile(r"^\s*(?P<key>[A-Za-z_][\w.\-]*)\s*(?P<op>==|!=|>=|<=|=|>|<|~)\s*(?P<value>.*?)\s*$")


def lookup(entry: dict[str, Any], key: str) -> Any:
    """A top-level field (name = the folder's name, kind, created, ...), a metric, or a setting (dotted key, or a
    bare name matched at any depth)."""
    if key in entry and not isinstance(entry[key], dict):
        return entry[key]
    if key in entry["metrics"]:
        return entry["metrics"][key]
    if key in entry["settings"]:
        return entry["settings"][key]
    ends = [v for k, v in entry["settings"].items() if k.endswith("." + key)]
    return ends[0] if len(ends) == 1 else None


def _compare(have: Any, op: str, want: str) -> bool:
    if have is None:
        return op == "!="
    if op == "~":
        return want.lower() in str(have).lower()
    try:
        h, w = float(have), float(want)
    except (TypeError, ValueError):
        h, w = str(have).lower(), want.strip("'\"").lower()
        if op in (">", "<", ">=", "<="):
            return False
    return {"=": h == w, "==": h == w, "!=": h != w, ">": h > w, "<": h < w, ">=": h >= w, "<=": h <= w}[op]


def parse_filter(expr: str) -> list[tuple[str, str, str]]:
    """``"strategy=lp-ft, macro_f1>0.9"`` -> conditions (all must hold); ``~`` means 'contains'."""
    conds = []
    for part in [p for p in re.split(r",|\band\b", expr) if p.strip()]:
        m = _COND.match(part)
        if m is None:
            raise ConfigError(f"Filter condition {part.strip()!r} is not KEY OP VALUE (OP one of = != > < >= <= ~), "
                              "e.g. --filter 'strategy=lp-ft, macro_f1>0.9'.")
        conds.append((m["key"], m["op"], m["value"]))
    return conds


def select(entries: list[dict[str, Any]], expr: str | None = None, sort: str | None = None,
           ascending: bool = False) -> list[dict[str, Any]]:
    """Entries matching every condition of ``expr``, sorted by ``sort`` (runs without that key last)."""
    conds = parse_filter(expr) if expr else []
    out = [e for e in entries if all(_compare(lookup(e, k), op, v) for k, op, v in conds)]
    if sort:
        have = [e for e in out if lookup(e, sort) is not None]
        missing = [e for e in out if lookup(e, sort) is None]
        try:
            have.sort(key=lambda e: lookup(e, sort), reverse=not ascending)
        except TypeError:
            have.sort(key=lambda e: str(lookup(e, sort)), reverse=not ascending)
        out = have + missing
    return out
